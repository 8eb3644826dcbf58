"""Issue 9, tried as an attacker would: a web page in the user's browser (DNS rebinding, cross-site
requests, shared links), another client of the server (custom models, the default model), and
whoever reads cookies or `ps`. Each test reproduces a finding and shows it refused with a clear
message while the server keeps serving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import routelens as rl
from routelens.server.access import check_bind, is_loopback
from routelens.server.app import create_app
from routelens.server.config import ServerConfig, load_config
from routelens.server.origins import HostPolicy
from servers import LOCAL, hold_model_loads
from tiny_models import save_tiny_model

TOKEN = "s3cret-token-for-tests"
PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def folder(tiny_folder) -> Path:
    return tiny_folder


def client_for(folder: Path, base_url: str = LOCAL, **settings) -> TestClient:
    config = ServerConfig(models={"tiny": str(folder)}, default_model="tiny", store=False, **settings)
    return TestClient(create_app(config, preload=False), base_url=base_url)


def error(r) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["message"]


# ---- 1. DNS rebinding and cross-site requests ----------------------------------------------------------
def test_a_foreign_host_name_is_refused_everywhere(folder):
    with client_for(folder, base_url="http://attacker.example:8000") as client:
        for r in (client.get("/api/config"), client.post("/api/trace", json={"prompt": PROMPT}), client.get("/")):
            status, code, message = error(r)
            assert (status, code) == (403, "forbidden_host")
            assert "DNS rebinding" in message and "allowed_hosts" in message
    with client_for(folder) as client:  # the same server keeps answering its own names
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "app.localhost", "10.1.2.3:8000"):
            assert client.get("/api/config", headers={"host": host}).status_code == 200, host
        for host in ("attacker.example", "127.0.0.1.attacker.example", "localhost.attacker.example", ""):
            assert client.get("/api/config", headers={"host": host}).status_code == 403, host
        assert client.get("/api/health").status_code == 200


def test_allowed_hosts_and_origins_open_the_server_to_a_tunnel(folder):
    settings = {"allowed_hosts": ["lab.example.org"], "allowed_origins": ["https://lab.example.org"]}
    with client_for(folder, base_url="https://lab.example.org", **settings) as client:
        assert client.get("/api/config").status_code == 200
        r = client.post("/api/trace", json={"prompt": PROMPT}, headers={"origin": "https://lab.example.org"})
        assert r.status_code == 200, r.text
        r = client.post("/api/trace", json={"prompt": PROMPT}, headers={"origin": "https://other.example.org"})
        assert error(r)[:2] == (403, "forbidden_origin")
    assert HostPolicy(allowed_hosts=["*"]).host_allowed("anything.example")


def test_requests_from_another_origin_are_refused(folder):
    with client_for(folder) as client:
        foreign = [
            {"origin": "http://evil.example"},
            {"origin": "http://127.0.0.1:3000"},  # another local app: another origin
            {"origin": "null"},  # a sandboxed frame or a file:// page
        ]
        for headers in foreign:
            r = client.post("/api/trace", json={"prompt": PROMPT}, headers=headers)
            assert error(r)[:2] == (403, "forbidden_origin"), headers
            assert client.get("/api/config", headers=headers).status_code == 403
        # no-cors requests (an <img>, a form) carry no Origin on GET, but the browser marks the site
        for site in ("cross-site", "same-site"):
            r = client.get("/api/config", headers={"sec-fetch-site": site})
            assert error(r)[:2] == (403, "forbidden_origin")
        # the page itself may be opened from a link anywhere; it holds no data
        assert client.get("/", headers={"sec-fetch-site": "cross-site"}).status_code == 200
        # the web app's own requests pass
        own = {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
        assert client.post("/api/trace", json={"prompt": PROMPT}, headers=own).status_code == 200
        assert client.get("/api/config", headers={"sec-fetch-site": "same-origin"}).status_code == 200


# ---- 8. cross-site POSTs, whatever the FastAPI version ------------------------------------------------------
def test_a_post_must_be_json_so_no_cross_site_request_can_send_one(folder):
    with client_for(folder) as client:
        body = '{"prompt": "the capital of france is"}'
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"content-type": kind} if kind else {}
            r = client.post("/api/trace", content=body, headers=headers)
            status, code, message = error(r)
            assert (status, code) == (415, "unsupported_media_type") and "application/json" in message, kind
        r = client.post("/api/login", content='{"token": "x"}', headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert client.post("/api/trace", content=body, headers={"content-type": "application/json; charset=utf-8"}).status_code == 200


def test_the_fastapi_pin_is_the_range_these_tests_prove():
    import tomllib

    import fastapi
    from packaging.specifiers import SpecifierSet

    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("fastapi")).removeprefix("fastapi")
    assert SpecifierSet(spec).contains(fastapi.__version__)
    assert not SpecifierSet(spec).contains("0.128.0")  # the version that let a no-cors Blob POST through


# ---- 11. headers that keep the page out of frames and stop sniffing -------------------------------------
def test_every_answer_carries_the_security_headers(folder):
    with client_for(folder) as client:
        for r in (client.get("/"), client.get("/api/config"), client.get("/api/nothing-here")):
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
        csp = client.get("/").headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "object-src 'none'" in csp
        refused = client.get("/api/config", headers={"host": "attacker.example"})
        assert refused.headers["x-frame-options"] == "DENY"


# ---- 2. no file is read without a configured folder ------------------------------------------------
def test_without_a_dataset_folder_no_file_is_read(folder, tmp_path, monkeypatch):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "notes.txt").write_text("my notes\n")
    monkeypatch.chdir(tmp_path)  # a server started from a home folder, no configuration file
    with TestClient(create_app(load_config(None), preload=False), base_url=LOCAL) as client:
        assert client.get("/api/config").json()["allow_loading_dataset_files"] is False
        for name in ("notes.txt", ".ssh/id_rsa", "absent.txt"):
            r = client.get("/api/prompts", params={"file": name})
            status, code, message = error(r)
            assert (status, code) == (403, "forbidden") and "dataset_dir" in message, name
            assert "PRIVATE KEY" not in r.text and "my notes" not in r.text
    data = tmp_path / "data"
    data.mkdir()
    (data / "p.txt").write_text("\ufeffThe capital of France is\r\nOne, two,\r\n")
    with client_for(folder, dataset_dir=data) as client:
        assert client.get("/api/config").json()["allow_loading_dataset_files"] is True
        assert client.get("/api/prompts", params={"file": "p.txt"}).json()["prompts"] == ["The capital of France is", "One, two,"]


# ---- 11. bad text and bad prompt files answer clearly ---------------------------------------------------
def test_login_with_a_lone_surrogate_is_refused_not_a_500(folder):
    with client_for(folder, access_token=TOKEN) as client:
        r = client.post("/api/login", content='{"token": "\\ud800"}', headers={"content-type": "application/json"})
        assert error(r)[:2] == (401, "unauthorized")
        assert client.get("/api/health").status_code == 200


def test_a_preloaded_prompt_file_that_is_not_utf8(folder, tmp_path):
    bad = tmp_path / "prompts.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")
    (tmp_path / "config.json").write_text('{"preloaded_dataset_filename": "prompts.txt"}')
    with pytest.raises(rl.RoutelensError, match="not UTF-8 text; save it as UTF-8"):
        load_config(tmp_path / "config.json")
    bad.write_text("good prompt\n")
    config = load_config(tmp_path / "config.json")
    config.models, config.default_model = {"tiny": str(folder)}, "tiny"
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as client:
        assert client.get("/api/config").json()["prompts"] == ["good prompt"]
        bad.write_bytes(b"caf\xe9\n")  # spoiled while the server runs: the built-in prompts, not a 500
        with pytest.warns(RuntimeWarning, match="cannot be used"):
            r = client.get("/api/config")
        assert r.status_code == 200 and "The capital of France is" in r.json()["prompts"]


# ---- 6. an empty --host binds every interface ----------------------------------------------------------------
def test_an_empty_host_is_not_loopback():
    assert not is_loopback("") and not is_loopback("0.0.0.0") and not is_loopback("::")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    with pytest.raises(rl.RoutelensError, match="--token-file FILE"):
        check_bind("", None, insecure=False)
    env = {k: v for k, v in os.environ.items() if k != "ROUTELENS_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "routelens", "serve", "--host", "", "--port", "9"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "serving" not in r.stdout and "Traceback" not in r.stderr
    assert r.stderr.startswith("routelens: error:") and "--host" in r.stderr  # refused before anything binds


# ---- 7. the cookie holds a session, not the token ----------------------------------------------------------
def test_the_login_cookie_holds_a_session_id_not_the_token(folder):
    with client_for(folder, access_token=TOKEN) as client:
        r = client.post("/api/login", json={"token": TOKEN})
        cookie = r.headers["set-cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        name, value = cookie.split(";", 1)[0].split("=", 1)
        assert len(value) >= 40 and client.get("/api/config").status_code == 200
        client.cookies.clear()
        client.cookies.set(name, TOKEN)  # the token itself is no session
        forged = client.get("/api/config")
        assert forged.status_code == 401 and "session" in forged.json()["error"]["message"]
        client.cookies.set(name, value)
        assert client.get("/api/config").status_code == 200
    with client_for(folder, access_token=TOKEN) as restarted:  # sessions end with the server
        restarted.cookies.set(name, value)
        assert restarted.get("/api/config").status_code == 401


# ---- 5. custom models: off by default, paths never, errors that tell nothing ---------------------------
def test_custom_models_are_off_unless_configured(folder):
    with client_for(folder) as client:
        assert client.get("/api/config").json()["allow_custom_models"] is False
        for name in ("gpt2", "/etc", str(folder)):
            status, code, message = error(client.post("/api/models/load", json={"model": name}))
            assert (status, code) == (403, "forbidden") and "allow_custom_models" in message


def test_custom_model_errors_reveal_nothing_about_the_machine(folder, tmp_path, monkeypatch):
    (tmp_path / "org" / "model").mkdir(parents=True)  # "org/model" exists as a folder here
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    home = str(Path.home())
    with client_for(folder, allow_custom_models=True) as client:
        messages = set()
        for name in ("/etc", "/no/such/folder", "~", "~/.ssh", "../x", "./afile", str(folder), "a\\b"):
            status, code, message = error(client.post("/api/models/load", json={"model": name}))
            assert (status, code) == (403, "forbidden"), name
            told = message.replace(repr(name), "NAME")
            assert home not in told and "exist" not in told and "directory" not in told and "file" not in told
            messages.add(told)
        assert len(messages) == 1, messages  # the same answer whether the path exists or not
        answers = set()
        for name in ("org/model", "no-such-org/no-such-model"):  # an existing folder is never read for a hub id
            client.post("/api/models/load", json={"model": name})
            slot = client.app.state.registry.slots[name]
            assert slot.done.wait(120)
            state = client.get("/api/models/status", params={"model": name}).json()
            assert state["state"] == "error" and home not in state["message"] and str(tmp_path) not in state["message"]
            answers.add(state["message"].replace(repr(name), "NAME"))
        assert len(answers) == 1, answers


def test_no_client_can_evict_the_default_model_or_pass_the_cap(folder, tmp_path, monkeypatch):
    names = {f"m{i}": str(tmp_path / f"m{i}") for i in range(4)}
    for i, path in enumerate(names.values()):
        save_tiny_model(path, seed=20 + i)
    config = ServerConfig(models={"tiny": str(folder), **names}, default_model="tiny", store=False)
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as client:
        registry = client.app.state.registry
        assert registry.get("tiny", 60).state == "ready"
        release = hold_model_loads(monkeypatch)
        assert client.post("/api/models/load", json={"model": "m0"}).status_code == 202
        for name in ("m1", "m2", "m3"):  # six loads at once used to be taken; now the cap holds
            r = client.post("/api/models/load", json={"model": name})
            status, code, message = error(r)
            assert (status, code) == (429, "busy") and "at most 2 models" in message and r.headers["retry-after"]
        release.set()
        assert registry.get("m0", 60).state == "ready"
        assert client.post("/api/models/load", json={"model": "m1"}).status_code == 202  # m0 makes room
        assert registry.get("m1", 60).state == "ready"
        assert set(registry.slots) == {"tiny", "m1"}
        assert client.post("/api/trace", json={"model": "tiny", "prompt": PROMPT}).status_code == 200


# ---- 4. a link never loads a model or runs work by itself: GETs start nothing ------------------------------
def test_get_requests_never_load_a_model(folder):
    with client_for(folder) as client:
        for path in ("/api/models/status?model=tiny", "/?model=tiny&prompt=the+capital", "/api/config"):
            assert client.get(path).status_code == 200
        assert client.app.state.registry.slots == {}
        r = client.get("/api/models/load", params={"model": "tiny"})
        assert r.status_code == 405 and client.app.state.registry.slots == {}


# ---- tokens cannot be guessed at speed (review of issue 9's fixes) ------------------------------------
def test_wrong_tokens_past_the_limit_are_refused_unread(folder):
    with client_for(folder, access_token=TOKEN, max_wrong_tokens_per_minute=5) as client:
        ok = client.post("/api/login", json={"token": TOKEN})
        name, value = ok.headers["set-cookie"].split(";", 1)[0].split("=", 1)
        client.cookies.clear()
        for _ in range(5):
            assert client.post("/api/login", json={"token": "not-the-token"}).status_code == 401
        for attempt in (client.post("/api/login", json={"token": TOKEN}),  # even the right one, while it lasts
                        client.get("/api/config", headers={"authorization": f"Bearer {TOKEN}"}),
                        client.get(f"/?token={TOKEN}", follow_redirects=False)):
            status, code, message = error(attempt)
            assert (status, code) == (429, "too_many_attempts") and "wait" in message
            assert int(attempt.headers["retry-after"]) >= 1
        client.cookies.set(name, value)  # a browser already logged in goes on
        assert client.get("/api/config").status_code == 200


def test_a_custom_name_never_evicts_a_loaded_model(folder, tmp_path):
    save_tiny_model(tmp_path / "other", seed=33)
    config = ServerConfig(models={"tiny": str(folder), "other": str(tmp_path / "other")}, default_model="tiny",
                          store=False, allow_custom_models=True)
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as client:
        registry = client.app.state.registry
        assert registry.get("tiny", 60).state == "ready" and registry.get("other", 60).state == "ready"
        status, code, message = error(client.post("/api/models/load", json={"model": "bogus/x"}))
        assert (status, code) == (429, "busy") and "never replaces a loaded one" in message
        assert set(registry.slots) == {"tiny", "other"}
