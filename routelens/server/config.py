"""Server configuration, compatible with the LLM Transparency Tool's JSON format.

    {"models": {"gpt2": null, "my-finetune": "/data/ckpt"}, "default_model": "gpt2",
     "demo_mode": false, "allow_loading_dataset_files": true,
     "preloaded_dataset_filename": "sample_input.txt", "debug": false, "max_user_string_length": 100}

A model's value, when given, is a local path (folder or .gguf) that is really loaded; the key is
the name users see. Unknown keys are ignored so configurations of the original tool load as is.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ForbiddenError, InvalidArgumentError, RoutelensError
from ..models import catalog

DEFAULT_PROMPTS = [
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
    "The Eiffel Tower is located in the city of",
    "1, 2, 3, 4, 5,",
]


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    models: dict[str, str | None] = Field(default_factory=lambda: {name: None for name in catalog.CATALOG})
    default_model: str = catalog.DEFAULT_MODEL
    demo_mode: bool = False
    allow_loading_dataset_files: bool = True
    preloaded_dataset_filename: str | None = None
    debug: bool = False
    max_user_string_length: int = 4000
    allow_custom_models: bool = True
    max_traces: int = 32
    # limits (issue 5): what one request or the whole server may take
    max_prompt_tokens: int = Field(2048, ge=1)  # tokens per traced prompt
    max_body_bytes: int = Field(1_000_000, ge=1024)  # of a request body
    max_trace_cache_mb: int = Field(4096, ge=1)  # memory of the traces kept for detail requests
    max_trace_memory_mb: float | None = Field(None, gt=0)  # a trace needing more is refused (413) before it runs
    max_export_edges: int = Field(200_000, ge=1)  # edges in one exported graph
    max_queue: int = Field(8, ge=0)  # requests waiting for a busy device before 429
    request_time_limit: float = Field(300.0, gt=0)  # seconds of model work per request
    demo_max_prompt_tokens: int = Field(256, ge=1)  # demo mode: no settings that cost memory
    demo_min_threshold: float = Field(0.01, ge=0, le=1)
    # what may run or be read: names of configured models allowed to run their repository's code or
    # to load pickled (.bin/.pt) weights; the folder dataset files are read from (default: the
    # configuration file's folder)
    trust_remote_code: list[str] = Field(default_factory=list)
    allow_pickle: list[str] = Field(default_factory=list)
    dataset_dir: Path | None = None
    access_token: str | None = Field(None, exclude=True)  # `serve --token`, $ROUTELENS_TOKEN or the file
    store: bool = True  # read and write the persistent trace store ($ROUTELENS_STORE, off with --no-store)
    base_dir: Path = Path(".")

    @property
    def custom_models_allowed(self) -> bool:
        return self.allow_custom_models and not self.demo_mode

    def model_names(self) -> list[str]:
        names = [n for n in self.models if n]
        if self.default_model and self.default_model not in names:
            names.insert(0, self.default_model)
        return names

    def source_of(self, name: str) -> str:
        """What to load for a configured name: its local path when one is given."""
        path = self.models.get(name)
        if path:
            p = Path(path).expanduser()
            return str(p if p.is_absolute() else (self.base_dir / p))
        return name

    @property
    def prompt_token_limit(self) -> int:
        return min(self.max_prompt_tokens, self.demo_max_prompt_tokens) if self.demo_mode else self.max_prompt_tokens

    def dataset_root(self) -> Path:
        root = self.dataset_dir if self.dataset_dir is not None else self.base_dir
        return (root if root.is_absolute() else self.base_dir / root).resolve()

    def dataset_path(self, name: str) -> Path:
        """A dataset file inside the dataset folder, or a refusal saying why (no absolute paths,
        no `..`, no symbolic links leading out of the folder)."""
        if self.demo_mode or not self.allow_loading_dataset_files:
            raise ForbiddenError("this server does not load dataset files" + (" in demo mode" if self.demo_mode else "")
                                 + "; type the prompts instead")
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            raise InvalidArgumentError("no dataset file named: give a file name inside the dataset folder")
        given = Path(name)
        drive_like = bool(given.parts) and ":" in given.parts[0]  # C:\\x on Windows
        if given.is_absolute() or name.startswith(("/", "\\")) or drive_like:
            raise ForbiddenError(f"{name!r} is an absolute path; name the file relative to the dataset folder")
        if ".." in given.parts or ".." in name.replace("\\", "/").split("/"):
            raise ForbiddenError(f"{name!r} goes up out of the dataset folder ('..'); name a file inside it")
        root = self.dataset_root()
        try:
            path = (root / given).resolve()
            found = path.is_file()
        except OSError as err:  # e.g. a name too long for the file system
            raise InvalidArgumentError(
                f"{name!r} cannot name a dataset file ({err.strerror or err}); name a file inside the dataset folder") from None
        if not path.is_relative_to(root):
            raise ForbiddenError(f"{name!r} leads out of the dataset folder (through a symbolic link); name a file inside it")
        if not found:
            raise InvalidArgumentError(f"no dataset file {name!r} in the dataset folder; check the name")
        return path

    def prompts(self) -> list[str]:
        # the operator's own file (from the configuration): read as given, relative to the file
        if self.preloaded_dataset_filename and self.allow_loading_dataset_files:
            path = Path(self.preloaded_dataset_filename)
            path = path if path.is_absolute() else self.base_dir / path
            if path.is_file():
                lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
                return [line for line in lines if line]
        return list(DEFAULT_PROMPTS)


def load_config(path: str | Path | None, model: str | None = None) -> ServerConfig:
    """Read a configuration file (or use defaults); `model` overrides the default model."""
    if path is None:
        config = ServerConfig()
    else:
        file = Path(path).expanduser()
        if not file.is_file():
            raise RoutelensError(f"no such configuration file: {file}")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            config = ServerConfig(**data, base_dir=file.resolve().parent)
        except (json.JSONDecodeError, ValidationError, TypeError) as err:
            raise RoutelensError(f"{file} is not a valid configuration: {str(err).splitlines()[0]}") from err
    if model:
        config.default_model = model
        if model not in config.models:
            config.models = {model: None, **config.models}
    return config
