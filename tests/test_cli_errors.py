"""Bad input ends in one clear line, never a traceback: the CLI checks its arguments before a model
loads, writes files without leaving temporaries, fails fast on an unreachable hub, refuses a busy
port before it says it serves; the library refuses a malformed graph file and a wrong `store`."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest

import routelens as rl
import tiny_models
from routelens import cli
from routelens.errors import GraphFileError, OutputFileError
from routelens.export import write_graph
from routelens.routes.graph import RouteGraph
from tiny_models import PROMPT, TinyTokenizer

MISSING_MODEL = "/nonexistent-routelens-model-folder"  # loading it fails: an argument error must come first


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("routelens: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routelens", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def graph() -> RouteGraph:
    model = rl.wrap(tiny_models.llama(), TinyTokenizer(), name="tiny-llama")
    return model.trace(PROMPT, store=False).graph(threshold=0.02)


@pytest.fixture
def no_token(monkeypatch):
    monkeypatch.delenv("ROUTELENS_TOKEN", raising=False)


# ---- 1, 2, 7: every option is checked while the command line is read, before a model loads ---------
BAD_ARGUMENTS = [
    (["trace", MISSING_MODEL, "hi", "--top", "-1"], "--top"),
    (["trace", MISSING_MODEL, "hi", "--top", "0"], "--top"),
    (["trace", MISSING_MODEL, "hi", "--top", "1e9"], "--top"),
    (["trace", MISSING_MODEL, "hi", "--top", str(10**12)], "from 1 to 100"),
    (["trace", MISSING_MODEL, "hi", "--top", "101"], "from 1 to 100"),
    (["trace", MISSING_MODEL, "hi", "--threshold", "nan"], "--threshold"),
    (["trace", MISSING_MODEL, "hi", "--threshold", "inf"], "--threshold"),
    (["trace", MISSING_MODEL, "hi", "--threshold", "-0.1"], "--threshold"),
    (["trace", MISSING_MODEL, "hi", "--threshold", "2"], "--threshold"),
    (["trace", MISSING_MODEL, "hi", "--threshold", "x"], "--threshold"),
    (["trace", MISSING_MODEL, "hi", "--target", "abc"], "--target"),
    (["trace", MISSING_MODEL, "hi", "--target", ""], "--target"),
    (["trace", MISSING_MODEL, "hi", "--device", "tpu"], "unknown device 'tpu'"),
    (["trace", MISSING_MODEL, "hi", "--device", ""], "unknown device"),
    (["trace", MISSING_MODEL, "hi", "--device-map", "bogus"], "unknown device map"),
    (["trace", MISSING_MODEL, "hi", "--revision", ""], "revision"),
    (["trace", MISSING_MODEL, "hi", "--revision", "a b"], "revision"),
    (["trace", MISSING_MODEL, "hi", "--dtype", "fp8"], "--dtype"),
    (["trace", MISSING_MODEL, "   "], "prompt is empty"),
    (["trace", "", "hi"], "no model name"),
    (["trace", "  ", "hi"], "no model name"),
    (["trace", MISSING_MODEL, "hi", "--out", "g.pdf"], "cannot tell the format"),
    (["check", MISSING_MODEL, "--prompt", ""], "prompt is empty"),
    (["check", MISSING_MODEL, "--device", "tpu"], "unknown device 'tpu'"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "0"], "--port"),
    (["serve", "--port", "-1"], "--port"),
    (["serve", "--port", "http"], "--port"),
    (["serve", "--host", ""], "--host"),
    (["serve", "--token", "abcdefghij", "--token-file", "t"], "--token"),
    (["cache", "purge"], "invalid choice"),
    (["trace", MISSING_MODEL], "required"),
    ([], "required"),
]


@pytest.mark.parametrize("argv,needle", BAD_ARGUMENTS,
                         ids=[" ".join(repr(a) if not a.strip() else a for a in argv if a != MISSING_MODEL) or "(nothing)"
                              for argv, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_before_a_model_loads(capsys, no_token, argv, needle):
    """The message names the argument, not the missing model: nothing was loaded first."""
    code, out, err = run_main(capsys, *argv)
    line = assert_one_line_error(code, err, needle)
    assert "no such model" not in line
    assert out == ""


def test_top_accepts_its_bounds(capsys, tiny_folder):
    code, out, err = run_main(capsys, "trace", str(tiny_folder), "the capital of france is", "--top", "100")
    assert code == 0, err
    assert "rank" in out and "Traceback" not in err


def test_help_still_exits_zero(capsys):
    code, out, _err = run_main(capsys, "trace", "--help")
    assert code == 0 and "--top" in out


# ---- 1: --out: a folder, an unwritable place, no temporary left -----------------------------------
def test_out_to_a_folder_is_refused_before_the_model_loads(capsys, tmp_path):
    folder = tmp_path / "g.json"
    folder.mkdir()
    code, out, err = run_main(capsys, "trace", MISSING_MODEL, "hi", "--out", str(folder))
    assert_one_line_error(code, err, "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"] and not any(folder.iterdir())


def test_out_under_a_file_is_refused_before_the_model_loads(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out, err = run_main(capsys, "trace", MISSING_MODEL, "hi", "--out", str(tmp_path / "afile" / "sub" / "g.json"))
    assert_one_line_error(code, err, "cannot write", "not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_to_a_read_only_folder_is_refused(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, out, err = run_main(capsys, "trace", MISSING_MODEL, "hi", "--out", str(ro / "g.json"))
        assert_one_line_error(code, err, "not writable")
        assert not any(ro.iterdir())
    finally:
        ro.chmod(0o700)


def test_out_writes_the_file_and_no_temporary(capsys, tiny_folder, tmp_path):
    out_file = tmp_path / "new" / "g.json"
    code, out, err = run_main(capsys, "trace", str(tiny_folder), "the capital of france is", "--out", str(out_file))
    assert code == 0, err
    assert rl.load_graph(out_file).tokens == ["the", "capital", "of", "france", "is"]
    assert [p.name for p in out_file.parent.iterdir()] == ["g.json"]


def test_write_graph_to_a_folder_leaves_no_temporary(graph, tmp_path):
    folder = tmp_path / "g.svg"
    folder.mkdir()
    with pytest.raises(OutputFileError, match="is a folder"):
        write_graph(graph, folder)
    with pytest.raises(OutputFileError, match="cannot write"):
        (tmp_path / "afile").write_text("x")
        write_graph(graph, tmp_path / "afile" / "g.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "g.svg"] and not any(folder.iterdir())


def test_write_graph_failing_mid_write_leaves_no_temporary(graph, tmp_path, monkeypatch):
    from routelens.export import files

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", disk_full)
    with pytest.raises(OutputFileError, match="No space left"):
        graph.save(tmp_path / "g.png")
    with pytest.raises(OutputFileError, match="No space left"):
        graph.to_json(tmp_path / "g.json")
    assert list(tmp_path.iterdir()) == []


def test_out_to_a_folder_has_no_traceback_in_a_real_process(tiny_folder, tmp_path):
    folder = tmp_path / "g.json"
    folder.mkdir()
    r = run_cli("trace", str(tiny_folder), "the capital", "--out", str(folder))
    assert "Traceback" not in r.stderr
    assert_one_line_error(r.returncode, r.stderr, "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]


# ---- 3: an unknown hub model: one line, however the hub fails -------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", ["as-is", "refused"])
def test_unknown_hub_model_is_one_line(endpoint, tmp_path):
    """As this machine has it (no network: a failed connection; with network: the hub's 404), and
    with the hub at a port where nothing listens (refused at once). No retry lines either way."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: nothing to fall back on
    if endpoint == "refused":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    r = run_cli("trace", "no-such-org/no-such-model", "hi", env=env, timeout=120)
    assert "Traceback" not in r.stderr
    assert "Retry" not in r.stderr
    assert_one_line_error(r.returncode, r.stderr, "'no-such-org/no-such-model'")


# ---- 4: store=True means the default store ---------------------------------------------------------
def test_trace_store_true_is_the_default_store(tmp_path, monkeypatch):
    model = rl.wrap(tiny_models.llama(), TinyTokenizer(), name="tiny-llama")
    monkeypatch.setenv("ROUTELENS_STORE", str(tmp_path / "store"))
    first = model.trace(PROMPT, store=True)
    second = model.trace(PROMPT, store=True)
    assert not first.capture.extra.get("stored") and second.capture.extra.get("stored")
    monkeypatch.setenv("ROUTELENS_STORE", "off")
    assert model.trace(PROMPT, store=True).check().ok  # the store is off: True stores nothing, still traces
    for wrong in ("yes", 1, object()):
        with pytest.raises(rl.InvalidArgumentError, match="store must be"):
            model.trace(PROMPT, store=wrong)


# ---- 5: load_graph validates what it reads; save() never ends in a KeyError -------------------------
def _first(data, kind):
    return next(n for n in data["nodes"] if n["kind"] == kind)


def _damage_node_kind(d):
    _first(d, "attn")["kind"] = "bogus"
    return "bogus"


def _damage_edge_kind(d):
    d["edges"][0]["kind"] = "teleport"
    return "teleport"


def _damage_endpoint(d):
    d["edges"][0]["source"] = "x:99:99"
    return "x:99:99"


def _damage_weight(value):
    def damage(d):
        d["edges"][1]["weight"] = value
        return "weight"
    return damage


def _damage_pos(d):
    _first(d, "attn")["pos"] = 999
    return "position 999"


def _damage_layer(d):
    _first(d, "ffn" if any(n["kind"] == "ffn" for n in d["nodes"]) else "attn")["layer"] = 77
    return "layer 77"


def _damage_duplicate(d):
    d["nodes"].append(dict(d["nodes"][0]))
    return "repeats"


def _damage_threshold(d):
    d["threshold"] = "high"
    return "threshold"


def _damage_layers(d):
    d["model"]["n_layers"] = 10**9
    return "n_layers"


def _damage_tokens(d):
    d["tokens"] = [1, 2]
    return "tokens"


def _damage_nodes(d):
    d["nodes"] = {"a": 1}
    return "nodes"


def _damage_heads(d):
    next(e for e in d["edges"] if e["kind"] == "attn")["heads"] = {"0": -1}
    return "heads"


DAMAGES = {
    "unknown node kind": _damage_node_kind, "unknown edge kind": _damage_edge_kind, "dangling edge": _damage_endpoint,
    "NaN weight": _damage_weight(math.nan), "infinite weight": _damage_weight(math.inf),
    "negative weight": _damage_weight(-0.5), "string weight": _damage_weight("0.5"), "bool weight": _damage_weight(True),
    "position out of range": _damage_pos, "layer out of range": _damage_layer, "duplicate node": _damage_duplicate,
    "threshold not a number": _damage_threshold, "absurd layer count": _damage_layers, "tokens not strings": _damage_tokens,
    "nodes not a list": _damage_nodes, "negative head share": _damage_heads,
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_load_graph_refuses_malformed_content(graph, tmp_path, damage):
    data = json.loads(json.dumps(graph.to_dict()))
    needle = DAMAGES[damage](data)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))  # json writes NaN and Infinity, and Python's json reads them back
    with pytest.raises(GraphFileError, match="damaged") as info:
        rl.load_graph(path)
    assert needle in str(info.value)
    assert isinstance(info.value, rl.RoutelensError)
    with pytest.raises(GraphFileError):
        RouteGraph.from_dict(data)


def test_load_graph_names_the_offending_node(graph, tmp_path):
    data = graph.to_dict()
    node = _first(data, "attn")
    data = {**data, "nodes": [dict(n, kind="bogus") if n is node else n for n in data["nodes"]]}
    (tmp_path / "g.json").write_text(json.dumps(data))
    with pytest.raises(GraphFileError, match=rf"node #\d+ \('{node['id']}'\) has unknown kind 'bogus'.*export the graph again"):
        rl.load_graph(tmp_path / "g.json")


def test_a_valid_graph_still_loads_and_saves_in_every_format(graph, tmp_path):
    path = graph.save(tmp_path / "g.json")
    back = rl.load_graph(path)
    assert back.to_dict() == graph.to_dict()
    for ext in ("graphml", "svg", "png", "html"):
        assert back.save(tmp_path / f"g.{ext}").stat().st_size > 0


def test_save_of_an_edited_graph_is_a_clear_error_not_a_key_error(graph, tmp_path):
    edited = RouteGraph.from_dict(json.loads(json.dumps(graph.to_dict())))
    next(iter(edited.nodes.values()))["kind"] = "bogus"
    for ext in ("svg", "png", "json"):
        with pytest.raises(GraphFileError, match="unknown kind 'bogus'"):
            edited.save(tmp_path / f"g.{ext}")
    assert list(tmp_path.iterdir()) == []


def test_load_graph_of_a_folder_is_clear(tmp_path):
    with pytest.raises(GraphFileError, match="is a folder"):
        rl.load_graph(tmp_path)


# ---- 6: serve: a busy port before "serving on"; the token from a file ------------------------------
def test_serve_on_a_busy_port_says_so_before_serving(capsys, no_token):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_main(capsys, "serve", "--port", str(port))
    assert_one_line_error(code, err, f"port {port} is in use: pick another with --port")
    assert "serving" not in out


def test_serve_on_an_address_not_of_this_machine(capsys, no_token, fake_server):
    with socket.socket() as probe:  # TEST-NET-1: no machine has it, unless non-local binds are allowed here
        try:
            probe.bind(("192.0.2.1", 0))
        except OSError:
            pass
        else:
            pytest.skip("this machine allows binding addresses it does not have")
    code, out, err = run_main(capsys, "serve", "--host", "192.0.2.1", "--port", "8000", "--insecure")
    assert_one_line_error(code, err, "not an address of this machine")
    assert "serving" not in out


@pytest.fixture
def fake_server(monkeypatch):
    """cmd_serve up to uvicorn, with neither a model nor a server: what it would have served."""
    import uvicorn

    import routelens.server.app as server_app

    seen: dict = {}

    def create_app(config, **_options):
        seen["config"] = config
        return object()

    def run(self, sockets=None):
        seen["sockets"] = sockets
        seen["bound"] = [s.getsockname() for s in sockets]

    monkeypatch.setattr(server_app, "create_app", create_app)
    monkeypatch.setattr(uvicorn.Server, "run", run)
    return seen


def test_serve_reads_the_token_from_a_file(capsys, no_token, fake_server, tmp_path):
    (tmp_path / "token").write_text("  s3cret-token-from-file  \nsecond line ignored\n")
    code, out, err = run_main(capsys, "serve", "--model", MISSING_MODEL, "--port", str(_closed_port()),
                              "--token-file", str(tmp_path / "token"))
    assert code == 0, err
    assert fake_server["config"].access_token == "s3cret-token-from-file"
    assert "serving" in out and "access token required" in out
    assert fake_server["bound"][0][0] == "127.0.0.1"
    assert all(s.fileno() == -1 for s in fake_server["sockets"])  # closed when the server ends


def test_serve_still_reads_the_token_from_the_environment(capsys, fake_server, monkeypatch):
    monkeypatch.setenv("ROUTELENS_TOKEN", "token-from-the-environment")
    code, out, err = run_main(capsys, "serve", "--model", MISSING_MODEL, "--port", str(_closed_port()))
    assert code == 0, err
    assert fake_server["config"].access_token == "token-from-the-environment"


@pytest.mark.parametrize("content,needle", [(None, "no such token file"), ("", "no token on its first line"),
                                            ("\n\nlater", "no token on its first line"), (b"\xff\xfe", "not text")])
def test_serve_token_file_problems_are_one_line(capsys, no_token, tmp_path, content, needle):
    path = tmp_path / "token"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = run_main(capsys, "serve", "--token-file", str(path))
    assert_one_line_error(code, err, needle)
    assert "serving" not in out


def test_token_option_help_warns_about_ps(capsys):
    code, out, _err = run_main(capsys, "serve", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "visible to other users" in text and "ps" in text and "--token-file" in text and "ROUTELENS_TOKEN" in text


# ---- 7: the trace store and model files --------------------------------------------------------------
def test_unusable_store_is_one_line_before_a_model_loads(capsys, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("ROUTELENS_STORE", str(tmp_path / "afile"))
    for argv in (["cache", "ls"], ["cache", "info"], ["trace", MISSING_MODEL, "hi"], ["check", MISSING_MODEL]):
        code, out, err = run_main(capsys, *argv)
        assert_one_line_error(code, err, "trace store")


def test_bad_model_files_are_one_line(capsys, tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    (tmp_path / "badcfg").mkdir()
    (tmp_path / "badcfg" / "config.json").write_text("{not json")
    for model, needle in ((tmp_path / "missing.gguf", "no such model"), (tmp_path / "bad.gguf", "could not load"),
                          (tmp_path / "badcfg", "could not load"), (tmp_path, "no config.json")):
        code, out, err = run_main(capsys, "trace", str(model), "hi")
        assert_one_line_error(code, err, needle)


def test_library_refuses_unknown_devices_before_loading(tiny_folder):
    for device in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(rl.InvalidArgumentError, match="unknown device"):
            rl.load(str(tiny_folder), device=device)
    with pytest.raises(rl.InvalidArgumentError, match="revision"):
        rl.load(str(tiny_folder), revision=" ")
