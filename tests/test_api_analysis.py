"""The dataset analyses' endpoints (server/analysis.py, docs/api.md "Dataset analyses"): the numbers
are load_analysis's, only configured folders are served, and no name reaches another folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import routelens as rl
from routelens.analysis.report import load_analysis
from routelens.analysis.run import Spec, analyze
from routelens.errors import RoutelensError
from routelens.server.config import ServerConfig
from servers import LOCAL

PROMPTS = [("the cat sat on the mat", "prose"), ("def f(x): return x", "code"), ("a b c d e f", "prose"),
           ("x = [1, 2, 3]", "code")]


@pytest.fixture(scope="module")
def made(tiny_folder, tmp_path_factory):
    """A finished analysis of four prompts on the tiny model: (its folder, the dataset file)."""
    root = tmp_path_factory.mktemp("analysis")
    data = root / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PROMPTS))
    model = rl.load(str(tiny_folder))
    out = root / "served" / "tinyrun"
    analyze(Spec(model=str(tiny_folder), dataset=str(data), positions="all", shard_size=2), out, model=model,
            progress=False)
    # a finished analysis next to it that the server is not given
    analyze(Spec(model=str(tiny_folder), dataset=str(data), shard_size=4), root / "served" / "secret", model=model,
            progress=False)
    return out, data


def client_for(tiny_folder, **config):
    from fastapi.testclient import TestClient

    from routelens.server.app import create_app

    cfg = ServerConfig(models={"tiny": str(tiny_folder)}, default_model="tiny", **config)
    return TestClient(create_app(cfg, preload=False), base_url=LOCAL)


def test_numbers_equal_load_analysis(made, tiny_folder):
    out, _ = made
    a = load_analysis(out)
    with client_for(tiny_folder, analysis_dirs=[out]) as c:
        listed = c.get("/api/analyses").json()
        assert listed == [{"name": "tinyrun", "model": str(tiny_folder), "n_prompts": 4, "labels": ["code", "prose"],
                           "positions": "all", "threshold": 0.04, "norm": 1, "dataset": "prompts.jsonl", "error": None}]
        d = c.get("/api/analysis/tinyrun").json()
        assert d["labels"] == a.labels and d["meta"] == a.meta
        assert d["heads"]["all"] == a.heads().tolist()
        assert d["frequency"]["all"] == a.heads(measure="frequency").tolist()
        for label in a.labels:
            assert d["heads"]["labels"][label] == a.heads(label).tolist()
            assert d["frequency"]["labels"][label] == a.heads(label, "frequency").tolist()
        assert d["previous_token"] == a.previous_token_scores().tolist()
        assert d["previous_token_heads"] == a.previous_token_heads()
        assert d["subword_merging_heads"] == a.subword_merging_heads()
        assert d["label_differences"] == a.label_differences(10)
        assert d["top_neurons"] == a.top_neurons(10)
        assert c.get("/api/analysis/tinyrun", params={"k": 3}).json()["label_differences"] == a.label_differences(3)

        L, H = len(d["heads"]["all"]), len(d["heads"]["all"][0])
        for layer, head in [(0, 0), (L - 1, H - 1)]:
            got = c.get("/api/analysis/tinyrun/head", params={"layer": layer, "head": head}).json()
            assert got == {"layer": layer, "head": head, "prompts": a.top_prompts(layer, head)}
            for p in got["prompts"]:
                assert (p["text"], p["label"]) == PROMPTS[p["prompt"]]
        for layer, head in [(L, 0), (-1, 0), (0, H), (0, -1)]:
            r = c.get("/api/analysis/tinyrun/head", params={"layer": layer, "head": head})
            assert r.status_code == 422 and "out of range" in r.json()["error"]["message"]
        assert c.get("/api/analysis/tinyrun/head", params={"layer": "x", "head": 0}).status_code == 422


def test_only_configured_folders_are_served(made, tiny_folder):
    out, _ = made
    with client_for(tiny_folder, analysis_dirs=[out]) as c:
        r = c.get("/api/analysis/secret")  # a finished analysis beside it, not configured
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_analysis"
        assert "--analysis" in r.json()["error"]["message"]
        for name in ["..%2Fsecret", "%2E%2E", "tinyrun%2F..%2Fsecret", "%2Fetc%2Fpasswd", "..", "tinyrun%00",
                     str(out.parent / "secret").replace("/", "%2F")]:
            r = c.get(f"/api/analysis/{name}")
            assert r.status_code == 404, name
            r = c.get(f"/api/analysis/{name}/head", params={"layer": 0, "head": 0})
            assert r.status_code == 404, name
    # nothing configured: nothing listed; demo mode serves none even when configured
    with client_for(tiny_folder) as c:
        assert c.get("/api/analyses").json() == []
        assert c.get("/api/analysis/tinyrun").status_code == 404
    with client_for(tiny_folder, analysis_dirs=[out], demo_mode=True) as c:
        assert c.get("/api/analyses").json() == []
        assert c.get("/api/analysis/tinyrun").status_code == 404


def test_relative_folders_names_and_unreadable_ones(made, tiny_folder, tmp_path):
    out, data = made
    cfg = ServerConfig(analysis_dirs=["tinyrun", str(out), str(tmp_path)], base_dir=out.parent)
    assert cfg.analysis_folders() == {"tinyrun": out.resolve(), tmp_path.name: tmp_path.resolve()}
    # a folder without a finished analysis is listed with the reason, and its details say it
    with client_for(tiny_folder, analysis_dirs=[out, tmp_path]) as c:
        listed = {x["name"]: x for x in c.get("/api/analyses").json()}
        assert listed["tinyrun"]["error"] is None
        assert "holds no analysis" in listed[tmp_path.name]["error"]
        r = c.get(f"/api/analysis/{tmp_path.name}")
        assert r.status_code == 422 and "holds no analysis" in r.json()["error"]["message"]


def test_a_head_s_prompts_come_from_the_folder_not_the_dataset(made, tiny_folder, tmp_path):
    """The analysis folder is whole on its own: its dataset deleted (or an analysis.json that names
    any file as its dataset), a head's prompts are still read from the folder's prompts.jsonl, and
    no other file is read."""
    out, data = made
    copy = tmp_path / "copy"
    moved = tmp_path / "data.jsonl"
    shutil.copy(data, moved)
    spec = Spec(model=str(tiny_folder), dataset=str(moved), positions="all", shard_size=4)
    analyze(spec, copy, model=rl.load(str(tiny_folder)), progress=False)
    moved.unlink()
    layer, head = next(iter(rl.load_analysis(copy).stats.top))  # a head with prompts in its top list
    with client_for(tiny_folder, analysis_dirs=[copy]) as c:
        r = c.get("/api/analysis/copy/head", params={"layer": layer, "head": head})
        assert r.status_code == 200, r.text
        texts = {json.loads(line)["text"] for line in data.read_text().splitlines()}
        assert r.json()["prompts"] and all(p["text"] in texts for p in r.json()["prompts"])
    meta = json.loads((copy / "analysis.json").read_text())
    meta["spec"]["dataset"] = "/etc/passwd"  # a folder pointing its dataset anywhere reads nothing there
    (copy / "analysis.json").write_text(json.dumps(meta))
    with client_for(tiny_folder, analysis_dirs=[copy]) as c:
        prompts = c.get("/api/analysis/copy/head", params={"layer": layer, "head": head}).json()["prompts"]
        assert prompts and all(p["text"] in texts for p in prompts)


def test_serve_refuses_a_folder_without_an_analysis(made, tmp_path):
    from routelens.cli.serve import add_analyses

    out, _ = made
    cfg = ServerConfig()
    add_analyses(cfg, [Path(out)])
    assert cfg.analysis_folders() == {"tinyrun": out.resolve()}
    with pytest.raises(RoutelensError, match="holds no analysis"):
        add_analyses(ServerConfig(), [tmp_path])
    with pytest.raises(RoutelensError, match="demo"):
        add_analyses(ServerConfig(demo_mode=True), [Path(out)])
