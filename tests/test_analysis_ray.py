"""The Ray executor of `analyze` (routelens/analysis/ray_executor.py): on a tiny model and a few prompts,
Ray actors give exactly the local executor's statistics, a run killed midway resumes without
recomputing its finished shards, and failures say what to do (Ray missing, a worker's own error).
Ray runs on this machine (2 CPUs, no dashboard), started once for the module."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import ray
import routelens.analysis.ray_executor as ray_executor
import routelens.analysis.run as run
from routelens.analysis.run import Spec, analyze, read_stats
from routelens.errors import InvalidArgumentError, ModelNotFoundError

PROMPTS = [("the cat sat on the mat", "prose"), ("def f(x): return x", "code"), ("le chat est noir", "french"),
           ("a b c d e f", "prose"), ("x = [1, 2, 3]", "code"), ("the dog ran to the park", "prose")]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PROMPTS))
    return path


def spec_of(tiny_folder, data, **kwargs) -> Spec:
    return Spec(model=str(tiny_folder), dataset=str(data), shard_size=2, **kwargs)  # 3 shards


def local(spec: Spec, out):
    """The local executor with one torch thread, as each of the 2 actors on 2 CPUs runs: the float32
    forward pass then sums in the same order, so the statistics can be compared exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return analyze(spec, out, progress=False)
    finally:
        torch.set_num_threads(threads)


def assert_same(a, b) -> None:
    assert sorted(a.labels) == sorted(b.labels) and (a.n_layers, a.n_heads, a.n_neurons) == (b.n_layers, b.n_heads,
                                                                                              b.n_neurons)
    for label in a.labels:
        ta, tb = a.labels[label].tensors(label), b.labels[label].tensors(label)
        assert sorted(ta) == sorted(tb)
        for name in ta:
            assert ta[name].dtype == tb[name].dtype and ta[name].shape == tb[name].shape, name
            assert torch.allclose(ta[name].double(), tb[name].double(), rtol=0, atol=1e-12), (label, name)
    assert a.top == b.top


@pytest.mark.parametrize("positions", ["last", "all"])
def test_ray_gives_the_local_statistics(local_ray, tiny_folder, data, tmp_path, positions):
    spec = spec_of(tiny_folder, data, positions=positions)
    here = local(spec, tmp_path / "local")
    shards = []
    there = analyze(spec, tmp_path / "ray", executor="ray", workers=2, progress=False)
    assert sum(s.prompts for s in there.labels.values()) == len(PROMPTS)
    assert_same(here, there)
    assert_same(here, read_stats(tmp_path / "ray" / "analysis.safetensors"))
    # what run_on_ray reports: 2 actors of one torch thread each, with their peak memory
    info = ray_executor.run_on_ray(spec, [(0, 2), (2, 4), (4, 6)], lambda start, stats: shards.append(start),
                                   workers=2)
    assert sorted(shards) == [0, 2, 4]
    assert info["workers"] == 2 and info["threads"] == 1 and all(p > 10 * 2**20 for p in info["peak_rss"])


def test_a_killed_ray_run_resumes_without_recomputing(local_ray, tiny_folder, data, tmp_path, monkeypatch):
    spec = spec_of(tiny_folder, data)
    real_write = run.Output.write_shard

    def dies_after_one(self, start, stats):  # the driver killed right after writing its first shard
        real_write(self, start, stats)
        raise KeyboardInterrupt

    monkeypatch.setattr(run.Output, "write_shard", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        analyze(spec, tmp_path / "out", executor="ray", workers=2, progress=False)
    files = list((tmp_path / "out" / "shards").glob("*.safetensors"))
    assert len(files) == 1 and not list((tmp_path / "out" / "shards").glob("*.tmp*"))
    first = int(files[0].name.split("-")[1].split(".")[0])
    stamp = files[0].stat().st_mtime_ns
    monkeypatch.setattr(run.Output, "write_shard", real_write)

    handed: list = []
    real_run = ray_executor.run_on_ray
    monkeypatch.setattr(ray_executor, "run_on_ray", lambda spec, todo, *a, **k: handed.extend(todo) or
                        real_run(spec, todo, *a, **k))
    resumed = analyze(spec, tmp_path / "out", executor="ray", workers=2, progress=False)
    assert sorted(handed) == [s for s in [(0, 2), (2, 4), (4, 6)] if s[0] != first]  # the finished shard is skipped
    assert files[0].stat().st_mtime_ns == stamp
    assert_same(local(spec, tmp_path / "local"), resumed)
    # a finished run started again: nothing handed out, no worker started
    assert ray_executor.run_on_ray(spec, [], lambda start, stats: None)["workers"] == 0
    assert_same(resumed, analyze(spec, tmp_path / "out", executor="ray", progress=False))


def test_ray_missing_says_how_to_install_it(tiny_folder, data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InvalidArgumentError, match=r'pip install "routelens\[ray\]"'):
        analyze(spec_of(tiny_folder, data), tmp_path / "out", executor="ray", progress=False)


def test_a_workers_error_comes_back_with_its_message(local_ray, tiny_folder, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "the cat"}\n{"text": ""}\n')
    with pytest.raises(InvalidArgumentError, match="prompt 1 of bad.jsonl is empty"):
        analyze(Spec(model=str(tiny_folder), dataset=str(bad), shard_size=1), tmp_path / "a", executor="ray",
                progress=False)
    # an actor whose model fails to load: its own error, not "the actor died"
    with pytest.raises(ModelNotFoundError, match="no such model"):
        ray_executor.run_on_ray(Spec(model=str(tmp_path / "nothing"), dataset=str(bad)), [(0, 1)],
                                lambda start, stats: None)

    # any other exception: re-raised with its type and message
    @ray.remote
    def boom():
        raise ValueError("boom at prompt 7")

    with pytest.raises(RuntimeError, match="failed on prompts 7..7: ValueError: boom at prompt 7"):
        ray_executor._get(ray, boom.remote(), "prompts 7..7")
