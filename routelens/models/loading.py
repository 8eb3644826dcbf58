"""Loading models: catalog names, hub ids (with revision), local directories, .gguf files,
or a model already in memory. Local paths are always really used, never silently replaced."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ForbiddenError, ModelNotFoundError, RoutelensError, UnknownModelError, UnsupportedArchitectureError
from . import catalog
from .adapters import supported_model_types
from .model import Model, ModelSource

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def wrap(hf_model: nn.Module, tokenizer: Any, name: str | None = None) -> Model:
    """Wrap a transformers causal LM already in memory."""
    label = name or getattr(hf_model.config, "_name_or_path", None) or type(hf_model).__name__
    return Model(hf_model, tokenizer, ModelSource(name=str(label), kind="memory"))


def resolve_device(device: str | None) -> str:
    """`None` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RoutelensError(f"device {device!r} was asked for but this machine has no CUDA GPU; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RoutelensError("device 'mps' was asked for but Apple MPS is not available; use --device cpu")
    return device


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise RoutelensError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16")
    return DTYPES[dtype]


def _has_pickled_weights(where: str) -> bool:
    folder = Path(where)
    return folder.is_dir() and any(f.suffix in (".bin", ".pt", ".pth") for f in folder.iterdir())


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(".gguf") or "\\" in name or Path(name).exists()


def load(
    name: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Model:
    """Load a model by catalog name, HF hub id, local directory or .gguf file.

    `device_map="auto"` is passed to transformers to spread a big model over several GPUs
    (then `device` is ignored). `progress` is told each stage: downloading, converting, loading.
    Weights load from safetensors or GGUF only: pickled weights (.bin, .pt) can run code when
    read, so they need `allow_pickle=True`; code from a model's repository needs
    `trust_remote_code=True`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError("no model name given: use a catalog name (see `routelens models`), a hub id or a path")
    name = name.strip()
    torch_dtype = resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    target_device = None if device_map is not None else resolve_device(device)

    if name in catalog.CATALOG:
        folder = catalog.ensure_local(name, progress)
        source = ModelSource(name=name, kind="catalog", revision=catalog.CATALOG[name].gguf_sha256[:12], path=str(folder))
        where, extra = str(folder), {}
    elif _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"no such model file or folder: {path}; check the path")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelNotFoundError(f"{path} is a file but not a .gguf file; give a model folder or a .gguf file")
            where, extra = str(path.parent), {"gguf_file": path.name}
            source = ModelSource(name=path.name, kind="gguf", path=str(path.resolve()))
        else:
            if not (path / "config.json").exists():
                raise ModelNotFoundError(f"{path} has no config.json: it is not a transformers model folder")
            where, extra = str(path), {}
            source = ModelSource(name=path.name, kind="local", path=str(path.resolve()))
    else:
        close = difflib.get_close_matches(name, list(catalog.CATALOG), n=1, cutoff=0.75)
        if close:
            raise UnknownModelError(f"unknown model {name!r}: did you mean {close[0]!r}? (`routelens models` lists the catalog)")
        where, extra = name, {"revision": revision} if revision else {}
        source = ModelSource(name=name, kind="hub", revision=revision)

    if progress:
        progress("loading")
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code, **extra)
        if config.model_type not in supported_model_types():
            raise UnsupportedArchitectureError(
                f"{name!r} is a {config.model_type!r} model ({', '.join(getattr(config, 'architectures', None) or [])}); "
                f"routelens decomposes only: {', '.join(supported_model_types())}"
            )
        if "gguf_file" not in extra and not allow_pickle:
            kwargs["use_safetensors"] = True  # never unpickle weights nobody allowed
        hf_model = AutoModelForCausalLM.from_pretrained(where, attn_implementation="eager", **kwargs, **extra)
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **extra)
    except (OSError, ValueError, KeyError) as err:
        text = str(err)
        if "trust_remote_code" in text:
            raise ForbiddenError(
                f"{name!r} runs code from its repository to load (trust_remote_code); routelens runs it only when "
                "told: rl.load(..., trust_remote_code=True), or list the model under \"trust_remote_code\" in the "
                "server's configuration") from None
        if not allow_pickle and "safetensors" in text.lower() and _has_pickled_weights(where):
            raise ForbiddenError(
                f"{name!r} has only pickled weights (.bin / .pt), which can run code when they are read; routelens "
                "loads safetensors or GGUF. Convert them, or allow it: rl.load(..., allow_pickle=True), or list the "
                "model under \"allow_pickle\" in the server's configuration") from None
        if source.kind == "hub":
            raise UnknownModelError(
                f"could not load {name!r}: it is not in the catalog (`routelens models`), not a local path, "
                f"and the Hugging Face hub did not provide it ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
            ) from err
        if "model type" in str(err) or "architecture" in str(err):
            raise UnsupportedArchitectureError(f"transformers cannot load {name!r}: {str(err).splitlines()[0][:300]}") from err
        raise ModelNotFoundError(f"could not load the model at {name!r}: {str(err).splitlines()[0][:300]}") from err
    if target_device is not None and target_device != "cpu":
        hf_model = hf_model.to(target_device)
    return Model(hf_model, tokenizer, source)
