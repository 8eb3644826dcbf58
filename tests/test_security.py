"""Who and what the server lets in: access tokens, binding, dataset paths, demo mode, remote code
and pickled weights. Every refusal is a clear message; nothing is served that should not be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import routelens as rl
from routelens.errors import ForbiddenError
from routelens.server.access import check_bind, token_matches
from routelens.server.app import create_app
from routelens.server.config import ServerConfig
from tiny_models import save_tiny_model
from servers import LOCAL

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def folder(tiny_folder) -> Path:
    return tiny_folder


def app_for(folder: Path, **settings) -> TestClient:
    return TestClient(create_app(ServerConfig(models={"tiny": str(folder)}, default_model="tiny", store=False, **settings),
                                 preload=False), base_url=LOCAL)


# ---- access token and binding -----------------------------------------------------------------
def test_requests_without_or_with_a_wrong_token_are_refused(folder):
    with app_for(folder, access_token=TOKEN) as client:
        none = client.get("/api/config")
        assert none.status_code == 401 and "access token" in none.json()["error"]["message"]
        wrong = client.get("/api/config", headers={"authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and "wrong access token" in wrong.json()["error"]["message"]
        assert client.post("/api/trace", json={"prompt": "the capital"}).status_code == 401
        assert client.get("/api/config", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/api/health").status_code == 200  # public: says nothing
        assert client.get("/").status_code == 200  # the page loads, then asks for the token


def test_the_web_app_logs_in_once_with_a_cookie(folder):
    with app_for(folder, access_token=TOKEN) as client:
        assert client.post("/api/login", json={"token": "nope-nope"}).status_code == 401
        ok = client.post("/api/login", json={"token": TOKEN})
        assert ok.status_code == 200 and "HttpOnly" in ok.headers["set-cookie"] and "SameSite=Strict" in ok.headers["set-cookie"]
        assert client.get("/api/config").status_code == 200  # the cookie now travels with every request
    with app_for(folder, access_token=TOKEN) as client:
        r = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert client.get("/api/config").status_code == 200


def test_tokens_compare_in_constant_time():
    import inspect

    from routelens.server import access

    assert "compare_digest" in inspect.getsource(access.token_matches)
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN) and not token_matches(None, TOKEN)


def test_binding_beyond_this_machine_needs_a_token_or_insecure():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, None, insecure=False)
    with pytest.raises(rl.RoutelensError, match="--token-file FILE.* or pass --insecure"):
        check_bind("0.0.0.0", None, insecure=False)
    check_bind("0.0.0.0", TOKEN, insecure=False)
    check_bind("0.0.0.0", None, insecure=True)
    env = {k: v for k, v in os.environ.items() if k != "ROUTELENS_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "routelens", "serve", "--host", "0.0.0.0", "--port", "9"],
                       capture_output=True, text=True, env=env, timeout=120)  # refused before anything binds
    assert r.returncode == 2 and "lets other machines reach routelens" in r.stderr
    short = subprocess.run([sys.executable, "-m", "routelens", "serve", "--token", "abc", "--port", "9"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert short.returncode == 2 and "too short" in short.stderr


# ---- dataset files ---------------------------------------------------------------------------------
@pytest.fixture()
def datasets(tmp_path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "prompts.txt").write_text("The capital of France is\n\nOne, two, three,\n")
    (root / "sub" / "more.txt").write_text("hello\n")
    (tmp_path / "secret.txt").write_text("do not read me\n")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "inside.txt").symlink_to(root / "prompts.txt")
    return root


def test_dataset_files_load_only_from_the_configured_folder(folder, datasets):
    with app_for(folder, dataset_dir=datasets) as client:
        ok = client.get("/api/prompts", params={"file": "prompts.txt"})
        assert ok.status_code == 200 and ok.json()["prompts"] == ["The capital of France is", "One, two, three,"]
        assert client.get("/api/prompts", params={"file": "sub/more.txt"}).json()["prompts"] == ["hello"]
        assert client.get("/api/prompts", params={"file": "inside.txt"}).status_code == 200  # a link that stays inside
        refused = {
            "../secret.txt": "goes up out of the dataset folder",
            "sub/../../secret.txt": "goes up out of the dataset folder",
            "..\\secret.txt": "goes up out of the dataset folder",
            str(datasets.parent / "secret.txt"): "absolute path",
            "/etc/passwd": "absolute path",
            "escape.txt": "symbolic link",
        }
        for name, why in refused.items():
            r = client.get("/api/prompts", params={"file": name})
            assert r.status_code == 403, (name, r.text)
            assert why in r.json()["error"]["message"], (name, r.json())
            assert "do not read me" not in r.text
        assert client.get("/api/prompts", params={"file": "absent.txt"}).status_code == 422
    with app_for(folder, dataset_dir=datasets, allow_loading_dataset_files=False) as client:
        assert client.get("/api/prompts", params={"file": "prompts.txt"}).status_code == 403


# ---- demo mode -------------------------------------------------------------------------------------------
def test_demo_mode_refuses_custom_models_files_and_costly_settings(folder, datasets):
    with app_for(folder, demo_mode=True, dataset_dir=datasets, demo_max_prompt_tokens=4) as client:
        custom = client.post("/api/models/load", json={"model": "gpt2"})
        assert custom.status_code == 403 and "does not load other models" in custom.json()["error"]["message"]
        other = client.post("/api/trace", json={"model": str(folder), "prompt": "the capital"})
        assert other.status_code == 403
        files = client.get("/api/prompts", params={"file": "prompts.txt"})
        assert files.status_code == 403 and "demo mode" in files.json()["error"]["message"]
        long = client.post("/api/trace", json={"model": "tiny", "prompt": "the capital of france is paris"})
        assert long.status_code == 413 and "at most 4" in long.json()["error"]["message"]
        tid = client.post("/api/trace", json={"model": "tiny", "prompt": "the capital"}).json()["trace_id"]
        low = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.001})
        assert low.status_code == 403 and "raise the threshold" in low.json()["error"]["message"]
        assert client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.05}).status_code == 200


# ---- what may run: remote code, pickles -------------------------------------------------------------
def test_a_model_that_needs_remote_code_is_refused_unless_named(tmp_path):
    model = tmp_path / "custom"
    save_tiny_model(model, seed=13)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update({"model_type": "my_custom_lm", "auto_map": {"AutoConfig": "configuration_my.MyConfig",
                                                            "AutoModelForCausalLM": "modeling_my.MyModel"}})
    (model / "config.json").write_text(json.dumps(cfg))
    (model / "configuration_my.py").write_text("raise SystemExit('this code must never run')\n")
    with pytest.raises(ForbiddenError, match="trust_remote_code"):
        rl.load(str(model))
    with app_for(model, allow_custom_models=False) as client:
        client.post("/api/models/load", json={"model": "tiny"})
        status = client.get("/api/models/status", params={"model": "tiny"})
        deadline = 60
        while status.json()["state"] == "loading" and deadline:
            import time

            time.sleep(0.2)
            deadline -= 1
            status = client.get("/api/models/status", params={"model": "tiny"})
        assert status.json()["state"] == "error" and "trust_remote_code" in status.json()["message"]


def test_pickled_weights_are_refused_unless_allowed(tmp_path):
    import torch

    model = save_tiny_model(tmp_path / "pickled", seed=14)
    for f in (tmp_path / "pickled").glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")  # the old pickle format
    with pytest.raises(ForbiddenError, match="pickled weights .* allow_pickle"):
        rl.load(str(tmp_path / "pickled"))
    loaded = rl.load(str(tmp_path / "pickled"), allow_pickle=True)
    assert loaded.trace("the capital", store=False).check().ok
