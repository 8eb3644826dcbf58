"""Loading models: catalog names, hub ids (with revision), local directories, .gguf files,
or a model already in memory. Local paths are always really used, never silently replaced."""

from __future__ import annotations

import difflib
import functools
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import (ForbiddenError, InvalidArgumentError, ModelNotFoundError, RoutelensError, UnknownModelError,
                      UnsupportedArchitectureError)
from . import catalog
from .adapters import supported_model_types
from .adapters.transformer_lens import PIP_EXTRA
from .model import Model, ModelSource

LOG = logging.getLogger("routelens")
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def wrap(hf_model: nn.Module, tokenizer: Any = None, name: str | None = None) -> Model:
    """Wrap a model already in memory: a transformers causal LM (its tokenizer is needed), or a
    TransformerLens TransformerBridge, raw or in compatibility mode (docs/transformer-lens.md; its
    own tokenizer when none is given). Raises UnsupportedArchitectureError for a model routelens
    cannot decompose exactly, InvalidArgumentError for a missing tokenizer."""
    from .adapters.transformer_lens import is_bridge, is_hooked_transformer

    if is_hooked_transformer(hf_model):
        return Model(hf_model, tokenizer, ModelSource(name=str(name or "HookedTransformer"), kind="memory"))  # refuses
    if is_bridge(hf_model):
        tokenizer = tokenizer if tokenizer is not None else getattr(hf_model, "tokenizer", None)
        label = name or getattr(hf_model.cfg, "model_name", None) or type(hf_model).__name__
        if tokenizer is None:
            raise InvalidArgumentError("this TransformerBridge has no tokenizer: pass one, rl.wrap(bridge, tokenizer)")
        return Model(hf_model, tokenizer, ModelSource(name=str(label), kind="memory", extra={"backend": "transformer-lens"}))
    if tokenizer is None:
        raise InvalidArgumentError("give the model's tokenizer: rl.wrap(model, tokenizer)")
    label = name or getattr(getattr(hf_model, "config", None), "_name_or_path", None) or type(hf_model).__name__
    return Model(hf_model, tokenizer, ModelSource(name=str(label), kind="memory"))


DEVICE = re.compile(r"(cpu|mps|cuda)(:\d{1,4})?")  # the devices routelens runs on (torch knows more)
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # transformers' named strategies
HUB_PROBE_TIMEOUT_S = 10.0  # one question to the hub, no retries, before transformers asks its own


def check_device(device: str) -> str:
    """Refuse, without touching torch's devices, a device name routelens does not run on."""
    if not isinstance(device, str) or not (device == "auto" or DEVICE.fullmatch(device)):
        raise InvalidArgumentError(f"unknown device {device!r}; use cpu, cuda, cuda:N (e.g. cuda:1) or mps")
    return device


def check_device_map(device_map: str) -> str:
    if not isinstance(device_map, str) or not (device_map in DEVICE_MAPS or DEVICE.fullmatch(device_map)):
        raise InvalidArgumentError(
            f"unknown device map {device_map!r}; use {', '.join(DEVICE_MAPS)} or a device such as cpu or cuda:0")
    return device_map


def check_revision(revision: str) -> str:
    if not isinstance(revision, str) or not revision.strip() or any(c.isspace() or ord(c) < 32 for c in revision):
        raise InvalidArgumentError(f"{revision!r} is not a hub revision; give a branch, tag or commit (e.g. main)")
    return revision


def resolve_device(device: str | None) -> str:
    """`None` picks cuda, then mps, then cpu; an explicit device that is absent is an error, and
    so is one routelens does not run on (cpu, cuda, cuda:N and mps are the ones)."""
    if isinstance(device, torch.device):
        device = str(device)
    if device is not None:
        check_device(device)
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RoutelensError(f"device {device!r} was asked for but this machine has no CUDA GPU; use --device cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise RoutelensError(f"device {device!r} was asked for but this machine has {n} CUDA GPU{'s' if n != 1 else ''} "
                             f"(cuda:0 to cuda:{n - 1}); pick one of them")
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


HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")


def _hub_unreachable(name: str, revision: str | None) -> str | None:
    """Ask the hub once, without retries, for the model's config.json. None: it answered, load
    as usual. A reason: it cannot be reached (no network, a timeout, a server error), so only the
    local cache is read; transformers would otherwise retry for half a minute and log each retry.
    A repository, revision or file the hub says it does not have raises UnknownModelError."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub import errors as hub_errors

    offline = getattr(constants, "is_offline_mode", None)
    if offline() if callable(offline) else constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        url = hf_hub_url(name, "config.json", revision=revision)
        get_hf_file_metadata(url, timeout=min(HUB_PROBE_TIMEOUT_S, float(constants.HF_HUB_ETAG_TIMEOUT)))
    except hub_errors.GatedRepoError:
        raise UnknownModelError(f"{name!r} is a gated model on the Hugging Face hub: accept its terms on its hub page, "
                                "then log in here (`hf auth login`)") from None
    except hub_errors.RepositoryNotFoundError:
        raise UnknownModelError(f"unknown model {name!r}: it is not in the catalog (`routelens models`), not a local path, "
                                "and the Hugging Face hub has no such model (or it is private: log in with "
                                "`hf auth login`); check the name") from None
    except hub_errors.RevisionNotFoundError:
        raise UnknownModelError(f"the Hugging Face hub model {name!r} has no revision {revision!r}; give a branch, "
                                "tag or commit it has (e.g. main)") from None
    except hub_errors.EntryNotFoundError:
        raise UnknownModelError(f"{name!r} on the Hugging Face hub has no config.json: it is not a transformers "
                                "model") from None
    except hub_errors.HFValidationError:
        raise UnknownModelError(f"{name!r} is not a Hugging Face hub id (owner/name), a catalog name "
                                "(`routelens models`) or a local path") from None
    except hub_errors.HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        return f"it answered HTTP {status}" if status else f"{type(err).__name__}"
    except Exception as err:  # noqa: BLE001 - the network layer's errors differ between versions
        first = (str(err).splitlines() or [""])[0][:120]
        return f"{type(err).__name__}: {first}" if first else type(err).__name__
    return None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(".gguf") or "\\" in name or Path(name).exists()


def _load_unlocked(
    name: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    progress: Callable[[str], None] | None = None,
    hub_only: bool = False,
) -> Model:
    """Load a model by catalog name, HF hub id, local directory or .gguf file.

    `device_map="auto"` is passed to transformers to spread a big model over several GPUs
    (then `device` is ignored). `progress` is told each stage: downloading, converting, loading.
    A model type with no native adapter is booted through TransformerLens when it is installed and
    has a bridge for it (logged as a warning; `facts()["backend"] == "transformer-lens"`, and a
    short probe must prove the parts exact first); otherwise UnsupportedArchitectureError says what
    might help.
    Weights load from safetensors or GGUF only: pickled weights (.bin, .pt) can run code when
    read, so they need `allow_pickle=True`; code from a model's repository needs
    `trust_remote_code=True`. `hub_only=True` (the server, for names typed by users) never reads
    a local path: the name must be a hub id.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError("no model name given: use a catalog name (see `routelens models`), a hub id or a path")
    name = name.strip()
    if revision is not None:
        check_revision(revision)
    if isinstance(device_map, str):
        check_device_map(device_map)
    torch_dtype = resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if device_map is not None:
        kwargs["device_map"] = device_map
    target_device = None if device_map is not None else resolve_device(device)

    if name in catalog.CATALOG:
        folder = catalog.ensure_local(name, progress)
        source = ModelSource(name=name, kind="catalog", revision=catalog.CATALOG[name].gguf_sha256[:12], path=str(folder))
        where, extra = str(folder), {}
    elif hub_only and (not HUB_ID.fullmatch(name) or Path(name).exists()):
        # transformers reads a folder of that name before asking the hub: never for hub_only names
        raise UnknownModelError(f"{name!r} is not a Hugging Face hub id (owner/name) that can be fetched; only hub ids "
                                "are accepted here")
    elif not hub_only and _looks_like_path(name):
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
        unreachable = _hub_unreachable(name, revision)
        if unreachable is not None:
            extra["local_files_only"] = True  # the local cache only: no retries, no retry warnings

    if progress:
        progress("loading")
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code, **extra)
        backend = "transformers"
        if config.model_type not in supported_model_types():
            support = transformer_lens_support(config)
            if support is not True:
                raise UnsupportedArchitectureError(
                    f"{name!r} is a {config.model_type!r} model ({', '.join(getattr(config, 'architectures', None) or [])}); "
                    f"routelens decomposes only: {', '.join(supported_model_types())}; {support}"
                )
            backend = "transformer-lens"
            LOG.warning("%s is a %r model, which routelens has no native adapter for: loading it through TransformerLens "
                        "(its TransformerBridge); a short probe checks that its parts are exact", name, config.model_type)
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
        if source.kind == "hub" and extra.get("local_files_only"):
            raise UnknownModelError(
                f"could not load {name!r}: it is not in the catalog (`routelens models`), not a local path, not in "
                f"the local Hugging Face cache, and the hub cannot be reached ({unreachable}); check the network "
                "and the name, or give a local model folder") from None
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
    if backend == "transformer-lens":
        try:
            bridge = boot_bridge(hf_model, tokenizer, where)
        except (ValueError, RuntimeError, NotImplementedError, KeyError) as err:
            raise UnsupportedArchitectureError(f"TransformerLens could not bridge {name!r} ({type(err).__name__}: "
                                               f"{(str(err).splitlines() or [''])[0][:300]})") from err
        source.extra["backend"] = "transformer-lens"
        return Model(bridge, tokenizer, source)
    return Model(hf_model, tokenizer, source)


def transformer_lens_support(config: Any) -> str | bool:
    """True when TransformerLens is installed and has a bridge for this transformers config;
    otherwise the reason, as the end of a refusal (what to install, or that it has none either)."""
    import importlib.util

    if importlib.util.find_spec("transformer_lens") is None:
        return f'TransformerLens may support it: {PIP_EXTRA}, then load it again'
    try:
        from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

        architecture = determine_architecture_from_hf_config(config)
    except ValueError:
        return "the installed TransformerLens has no bridge for it either"
    except ImportError as err:  # a TransformerLens older than 4, or one that moved this helper
        return f"the installed TransformerLens cannot be asked ({err}); routelens uses transformer-lens>=4.3"
    if getattr(config, "is_encoder_decoder", False) or not (
            architecture.endswith("ForCausalLM") or architecture in DECODER_LM_HEADS):
        return f"TransformerLens bridges it as {architecture}, which is not a decoder-only causal LM either"
    return True


# TransformerLens architectures of decoder-only causal LMs whose names do not end in ForCausalLM
DECODER_LM_HEADS = ("GPT2LMHeadModel", "GPT2LMHeadCustomModel", "OpenAIGPTLMHeadModel")


def boot_bridge(hf_model: nn.Module, tokenizer: Any, where: str) -> nn.Module:
    """Wrap a loaded transformers model in a TransformerLens TransformerBridge (raw weights: the
    model's own numbers), without fetching anything: the model and tokenizer are passed in."""
    from transformer_lens.model_bridge import TransformerBridge

    device = str(next(hf_model.parameters()).device)
    dtype = next(hf_model.parameters()).dtype
    return TransformerBridge.boot_transformers(where, hf_model=hf_model, tokenizer=tokenizer, device=device,
                                               dtype=dtype)


# transformers patches process-wide functions while it builds a model (empty-weight init, tied
# weights): two loads at once can leave one model's output weights on the `meta` device. Loads
# therefore run one at a time in this process, whoever calls them (the server, notebooks, threads).
LOAD_LOCK = threading.RLock()


@functools.wraps(_load_unlocked)
def load(name: str, **kwargs: Any) -> Model:
    with LOAD_LOCK:
        return _load_unlocked(name, **kwargs)
