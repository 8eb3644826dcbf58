"""Server configuration, compatible with the LLM Transparency Tool's JSON format.

    {"models": {"gpt2": null, "my-finetune": "/data/ckpt"}, "default_model": "gpt2",
     "demo_mode": false, "allow_loading_dataset_files": true,
     "preloaded_dataset_filename": "sample_input.txt", "debug": false, "max_user_string_length": 100}

A model's value, when given, is a local path (folder or .gguf) that is really loaded; the key is
the name users see. Unknown keys are ignored so configurations of the original tool load as is.

Safe by default (docs/api.md, "Security model"): only the configured models load (custom names
need `allow_custom_models`), no file is read unless `dataset_dir` names a folder
(or `analysis_dirs` / `serve --analysis` an analysis folder, read on its own), only loopback
names and the bound address may be the `Host` (more with `allowed_hosts`), and every per-request
limit is on, the memory ones sized from this machine's memory.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ForbiddenError, InvalidArgumentError, RoutelensError
from ..models import catalog

MAX_PROMPT_FILE_BYTES = 1_000_000
MAX_PROMPTS = 10_000


def _cgroup_limit_files() -> list[str]:
    """This process's own cgroup memory limit files (v2, then v1), then the root ones."""
    files = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2: "0::/user.slice/..."
                files.append(f"/sys/fs/cgroup{path}/memory.max")
            elif "memory" in controllers.split(","):
                files.append(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
    except (OSError, ValueError):
        pass
    return files + ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]


def machine_memory_mb() -> float:
    """Memory this process may use, in MiB: the machine's, or its cgroup's limit when lower."""
    total = 16 * 1024.0  # when nothing can be read
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        pass
    for limit_file in _cgroup_limit_files():
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) / 2**20 < total:
            total = int(raw) / 2**20
    return total


def default_trace_memory_mb() -> float:
    """A quarter of the machine's memory for one trace at its peak, and no more than the trace
    cache holds (the newest trace is always kept, so one trace must fit the cache's budget)."""
    return round(min(machine_memory_mb() / 4, default_trace_cache_mb()))


def default_trace_cache_mb() -> int:
    """Traces kept for detail requests: 4 GiB, or a quarter of the memory when that is less."""
    return int(max(64, min(4096, machine_memory_mb() / 4)))


def read_prompt_file(path: Path) -> list[str]:
    """One prompt a line, read by the rule every path shares (routelens.prompts: UTF-8, a
    byte-order mark dropped, CRLF / CR / LF line ends, each line kept as written, blank lines
    skipped), at most 1 MB."""
    from ..prompts import prompt_lines

    if path.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise InvalidArgumentError(f"{path.name!r} is larger than 1 MB; split it into smaller prompt files")
    try:
        # bytes, then decode: read_text would turn CR and CRLF into LF itself (universal newlines)
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"{path.name!r} is not UTF-8 text; save it as UTF-8, one prompt per line") from None
    return prompt_lines(text)[:MAX_PROMPTS]


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
    max_user_string_length: int = 40_000  # characters: about 8-10k tokens (research prompts are long)
    allow_custom_models: bool = False  # hub ids and paths typed in the app; off: only `models` load
    max_traces: int = 32
    # limits (issue 5): what one request or the whole server may take
    max_prompt_tokens: int = Field(8192, ge=1)  # tokens per traced prompt (memory: max_trace_memory_mb)
    max_body_bytes: int = Field(1_000_000, ge=1024)  # of a request body
    max_trace_cache_mb: int = Field(default_factory=default_trace_cache_mb, ge=1)  # traces kept for detail requests
    max_trace_memory_mb: float | None = Field(default_factory=default_trace_memory_mb, gt=0)  # refused (413) before it runs
    max_graph_edges: int = Field(200_000, ge=1)  # edges of one route graph (/graph, /export), counted as it is built
    max_export_edges: int = Field(200_000, ge=1)  # edges in one exported graph (the lower of the two applies)
    max_response_mb: float = Field(64, gt=0)  # one JSON answer (head matrices are sized before they are built)
    max_loaded_models: int = Field(2, ge=1)  # models in memory at once, the default one included
    max_wrong_tokens_per_minute: int = Field(20, ge=1)  # then token guesses get 429 unread
    header_timeout_s: float = Field(10.0, gt=0)  # a request's headers must arrive whole within this
    body_timeout_s: float = Field(30.0, gt=0)  # and its body within this (408)
    max_queue: int = Field(8, ge=0)  # requests waiting for a busy device before 429
    request_time_limit: float = Field(300.0, gt=0)  # seconds of model work per request
    max_generate_tokens: int = Field(64, ge=0)  # tokens one request may generate (0: no generation)
    max_verify_trials: int = Field(10, ge=0)  # random knockouts per verification (each a forward pass)
    max_verify_positions: int = Field(1024, ge=1)  # a route verified by knockout reruns the prefix up to its target
    demo_max_prompt_tokens: int = Field(256, ge=1)  # demo mode: no settings that cost memory
    demo_min_threshold: float = Field(0.01, ge=0, le=1)
    # what may run or be read: names of configured models allowed to run their repository's code or
    # to load pickled (.bin/.pt) weights; the folder dataset files are read from (default: the
    # configuration file's folder)
    trust_remote_code: list[str] = Field(default_factory=list)
    allow_pickle: list[str] = Field(default_factory=list)
    dataset_dir: Path | None = None
    # finished dataset analyses (`routelens analyze --out DIR`) the web app's dataset view shows
    # (server/analysis.py); `serve --analysis DIR` adds to them; none in demo mode
    analysis_dirs: list[Path] = Field(default_factory=list)
    # who may talk to the server (origins.py): Host names beyond loopback and the bound address
    # (a tunnel's or reverse proxy's name; "*" for any), and origins of pages allowed to call the API
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    bind_host: str | None = Field(None, exclude=True)  # set by `serve --host`
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

    @property
    def dataset_files_allowed(self) -> bool:
        """Dataset files are read only from a configured folder, never in demo mode."""
        return self.allow_loading_dataset_files and not self.demo_mode and self.dataset_dir is not None

    def dataset_root(self) -> Path:
        if self.dataset_dir is None:
            raise ForbiddenError("this server reads no dataset files: none was given a folder (set \"dataset_dir\" "
                                 "in the server's configuration); type the prompts instead")
        root = Path(self.dataset_dir).expanduser()
        return (root if root.is_absolute() else self.base_dir / root).resolve()

    def dataset_path(self, name: str) -> Path:
        """A dataset file inside the dataset folder, or a refusal saying why (no absolute paths,
        no `..`, no symbolic links leading out of the folder)."""
        if self.demo_mode or not self.allow_loading_dataset_files:
            raise ForbiddenError("this server does not load dataset files" + (" in demo mode" if self.demo_mode else "")
                                 + "; type the prompts instead")
        self.dataset_root()  # refuses when no folder was configured
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

    def analysis_folders(self) -> dict[str, Path]:
        """The configured analysis folders by name (the folder's name; a repeated name gets -2, -3...),
        relative paths read from the configuration's folder like dataset_dir. None in demo mode."""
        if self.demo_mode:
            return {}
        out: dict[str, Path] = {}
        for folder in self.analysis_dirs:
            path = Path(folder).expanduser()
            path = (path if path.is_absolute() else self.base_dir / path).resolve()
            if path in out.values():
                continue
            base = path.name or "analysis"
            name, n = base, 1
            while name in out:
                n += 1
                name = f"{base}-{n}"
            out[name] = path
        return out

    def preloaded_path(self) -> Path | None:
        if not (self.preloaded_dataset_filename and self.allow_loading_dataset_files):
            return None
        path = Path(self.preloaded_dataset_filename).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def prompts(self) -> list[str]:
        """The operator's own prompt file (from the configuration, relative to it), else a few
        built-in prompts. A file that became unreadable is reported once and the defaults used."""
        path = self.preloaded_path()
        if path is not None and path.is_file():
            try:
                return read_prompt_file(path) or list(DEFAULT_PROMPTS)
            except (RoutelensError, OSError) as err:
                warnings.warn(f"routelens: the preloaded prompts file {path} cannot be used ({err}); "
                              "showing the built-in prompts", RuntimeWarning, stacklevel=2)
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
        except (json.JSONDecodeError, ValidationError, TypeError, UnicodeDecodeError) as err:
            raise RoutelensError(f"{file} is not a valid configuration: {str(err).splitlines()[0]}") from err
        preloaded = config.preloaded_path()
        if preloaded is not None and preloaded.is_file():  # a bad prompt file: the operator's to fix, at start
            try:
                read_prompt_file(preloaded)
            except RoutelensError as err:
                raise RoutelensError(f"preloaded_dataset_filename in {file}: {err}") from None
    if model:
        config.default_model = model
        if model not in config.models:
            config.models = {model: None, **config.models}
    return config
