"""Routes along a generated continuation (trace/generation.py): the one trace of prompt and
continuation reproduces what the model computed while generating, step by step."""

from __future__ import annotations

import pytest
import torch

import routelens as rl
from routelens.errors import InvalidArgumentError, PromptTooLongError

from tiny_models import FAMILIES, PROMPT, TinyTokenizer


def tiny(name: str = "llama"):
    return rl.wrap(FAMILIES[name](), TinyTokenizer(), name=f"tiny-{name}")


@pytest.mark.parametrize("name", ["llama", "gpt2", "gpt_neox"])
def test_greedy_steps_are_the_models_own_argmax_and_probabilities(name):
    model = tiny(name)
    g = model.generate(PROMPT, 6, store=False)
    assert len(g.steps) == 6 and g.prompt_length == len(PROMPT)
    ids = g.trace.token_ids
    assert ids[: len(PROMPT)] == PROMPT and ids[len(PROMPT):] == [s["token_id"] for s in g.steps]
    with torch.no_grad():  # the model's own logits on the final text, no routelens involved
        logits = model.adapter.model(torch.tensor([ids])).logits[0].double()
    for k, s in enumerate(g.steps):
        pos = len(PROMPT) - 1 + k
        assert s["pos"] == pos and s["rank"] == 0
        assert s["token_id"] == int(logits[pos].argmax())
        assert s["prob"] == pytest.approx(float(logits[pos].softmax(-1)[s["token_id"]]), abs=1e-5)
    # each step's route starts at the position that predicted it, labelled with the generated token
    for k in (0, 3, -1):
        graph = g.graph(k, 0.04)
        assert graph.target["pos"] == g.steps[k]["pos"] and graph.target["token_id"] == g.steps[k]["token_id"]
        assert f"x:{g.trace.n_layers}:{g.steps[k]['pos']}" in graph.nodes


def test_sampling_is_reproducible_by_seed_and_reports_ranks():
    model = tiny()
    a = model.generate(PROMPT, 8, sample=True, seed=7, store=False)
    b = model.generate(PROMPT, 8, sample=True, seed=7, store=False)
    c = model.generate(PROMPT, 8, sample=True, seed=8, store=False)
    tokens = lambda g: [s["token_id"] for s in g.steps]  # noqa: E731
    assert tokens(a) == tokens(b) and tokens(a) != tokens(c)
    assert a.sampled and a.seed == 7
    with torch.no_grad():
        logits = model.adapter.model(torch.tensor([a.trace.token_ids])).logits[0]
    for s in a.steps:  # rank: how many tokens the model preferred over the sampled one
        row = logits[s["pos"]]
        assert s["rank"] == int((row > row[s["token_id"]]).sum())


def test_contrastive_route_of_a_step():
    model = tiny()
    g = model.generate(PROMPT, 3, store=False)
    foil = g.trace.predictions(k=2)[g.steps[1]["pos"]][1]["id"]
    graph = g.graph(1, 0.04, foil=foil)
    assert graph.target["foil_id"] == foil and graph.target["token_id"] == g.steps[1]["token_id"]


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "1..512"), ({"n": 10_000}, "1..512"), ({"n": 2, "sample": "yes"}, "sample must be"),
    ({"n": 2, "seed": -1}, "seed must be"), ({"n": 2, "temperature": 0}, "temperature must be"),
])
def test_bad_options_say_what_to_give(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        tiny().generate(PROMPT, **kwargs)


def test_past_the_context_is_refused_before_generating():
    model = tiny()
    limit = model.adapter.context_length
    with pytest.raises(PromptTooLongError, match="generate at most"):
        model.generate(PROMPT, min(512, limit - len(PROMPT) + 1))
    with pytest.raises(InvalidArgumentError, match="out of range"):
        model.generate(PROMPT, 2, store=False).graph(5)


def test_every_steps_route_from_one_pass_equals_its_own_route():
    model = tiny()
    g = model.generate(PROMPT, 4, store=False)
    fresh = model.trace(g.trace.token_ids, store=False)  # an independent trace, routes one by one
    for k, graph in enumerate(g.graphs(0.04)):
        alone = fresh.graph(g.steps[k]["pos"], 0.04, token=g.steps[k]["token_id"])
        assert graph.target == alone.target and set(graph.nodes) == set(alone.nodes)
        weights = {(e["source"], e["target"], e["kind"]): e["weight"] for e in alone.edges}
        assert len(graph.edges) == len(weights)
        for e in graph.edges:  # batched rows round differently in the last bits, nothing more
            assert e["weight"] == pytest.approx(weights[(e["source"], e["target"], e["kind"])], abs=1e-6)


def test_steps_and_options_of_the_wrong_type_are_refused():
    model = tiny()
    g = model.generate(PROMPT, 2, store=False)
    for step in (1.0, "0", True):
        with pytest.raises(InvalidArgumentError, match="out of range"):
            g.graph(step)
    with pytest.raises(InvalidArgumentError, match="applies to sampling only"):
        model.generate(PROMPT, 2, temperature=0.5)
