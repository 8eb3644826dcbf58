"""What makes two traces the same: the model's exact weights and code path, the token ids, and the
settings that change the numbers. The store's keys are built here and nowhere else.

Weights are identified by content, never by name alone: a model loaded from files (catalog folder,
local folder, .gguf) by the SHA-256 of its weight files (memoised by path, size and mtime, so it
is hashed once per file version); a model given in memory or fetched from the hub by a hash of
its parameters. A guard on every parameter's storage and version counter notices in-place edits
made after loading (`p.copy_`, `p.mul_`, `p.data = ...`); edits through `p.data.<op>_()` bypass
torch's version counter and are not seen, so trace with `store=False` when patching that way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from ..models.model import Model

# Bump when what a stored capture contains or means changes: old entries then simply miss.
CAPTURE_FORMAT = 2  # 2: the residual stream only (layers are replayed)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "_commit_hash", "transformers_version", "name_or_path"}


def weight_files(path: str | None) -> list[Path]:
    """The files whose bytes are the model's weights: a .gguf file, or those in a model folder."""
    if not path:
        return []
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    return []


def hash_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_parameters(module: torch.nn.Module) -> str:
    """SHA-1 over every parameter's and buffer's name, dtype, shape and bytes (in memory)."""
    h = hashlib.sha1()
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        t = tensor.detach()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def parameter_guard(module: torch.nn.Module) -> tuple:
    """Storage address and version counter of each parameter: changes when weights are edited."""
    return tuple((t.data_ptr(), t._version) for t in module.parameters())


def config_digest(config: Any) -> str:
    data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ModelIdentity:
    """Everything about a loaded model that changes a captured number."""

    name: str
    revision: str | None
    weights: str  # "files:<sha>" or "params:<sha>"
    config: str
    dtype: str
    device: str
    family: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_identity(model: Model, file_hash: Callable[[Path], str] = hash_file) -> ModelIdentity:
    """The identity of `model` now (cached on the model until its parameters change)."""
    hf = model.hf_model
    guard = parameter_guard(hf)
    cached = getattr(model, "_routelens_identity", None)
    if cached is not None and cached[0] == guard:
        return cached[1]
    # Files are trusted only while the parameters are exactly those loaded from them.
    files = weight_files(model.source.path) if model.source.kind in ("catalog", "local", "gguf") else []
    if files and guard == model.loaded_guard:
        weights = "files:" + hashlib.sha256("".join(file_hash(f) for f in files).encode()).hexdigest()
    else:
        weights = "params:" + hash_parameters(hf)
    param = next(hf.parameters())
    identity = ModelIdentity(
        name=model.name,
        revision=model.source.revision,
        weights=weights,
        config=config_digest(hf.config),
        dtype=str(param.dtype).removeprefix("torch."),
        device=param.device.type,
        family=model.adapter.family,
    )
    model._routelens_identity = (guard, identity)  # type: ignore[attr-defined]
    return identity


def trace_key(identity: ModelIdentity, token_ids: list[int]) -> str:
    """The store key of one capture: identity, token ids and the library versions that compute it."""
    import transformers

    raw = json.dumps(
        {
            "format": CAPTURE_FORMAT,
            "model": {k: v for k, v in identity.as_dict().items() if k != "name"},
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokens": token_ids,
        },
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()
