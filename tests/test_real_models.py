"""The embedded real models: predictions, routes and exactness on real weights."""

from __future__ import annotations

import json

import jsonschema
import pytest

from routelens.export.schema import SCHEMA_FILE

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def france(smollm2):
    return smollm2.trace(PROMPT)


def test_smollm2_predicts_paris(france):
    assert france.tokens[-2] == " France"
    token, prob = france.top_predictions(pos=-1, k=5)[0]
    assert token == " Paris"
    assert prob > 0.3


def test_smollm2_route_reads_france_through_attention(france):
    graph = france.graph(target=-1, threshold=0.04)
    france_pos = france.tokens.index(" France")
    out_of_france = [
        e for e in graph.edges
        if e["kind"] == "attn" and graph.nodes[e["source"]]["pos"] == france_pos and graph.nodes[e["target"]]["pos"] != france_pos
    ]
    assert out_of_france, "the route to ' Paris' should read ' France' through at least one attention edge"
    for edge in out_of_france:
        assert edge["weight"] > 0.04
        assert sum(edge["heads"].values()) == pytest.approx(edge["weight"], abs=1e-6)
    jsonschema.validate(graph.to_dict(), json.loads(SCHEMA_FILE.read_text()))


def test_smollm2_check_passes(france):
    report = france.check()
    assert report.ok, str(report)
    assert report.max_error <= 1e-5
    assert france.importance_sums_error() <= 1e-5


def test_smollm2_logit_lens_matches_model_logits(smollm2, france):
    import torch

    with torch.no_grad():
        own = smollm2.hf_model(input_ids=torch.tensor([france.token_ids])).logits[0]
    from routelens.routes.vocab import logit_lens

    lens = logit_lens(smollm2.adapter, france.resid(france.n_layers))
    assert (lens - own).abs().max() <= 1e-4 * own.abs().max()


def test_smollm2_top_tokens_of_last_node_show_paris(france):
    top = france.top_tokens("block", france.n_layers - 1, -1, k=5)
    assert top[0]["token"] == " Paris"
    assert top[0]["prob"] == pytest.approx(france.top_predictions(-1, 1)[0][1], rel=1e-5)


def test_gemma3_check_and_route(gemma3):
    trace = gemma3.trace(PROMPT)
    report = trace.check()
    assert report.ok, str(report)
    assert trace.importance_sums_error() <= 1e-5
    graph = trace.graph(target=-1, threshold=0.04)
    kinds = {e["kind"] for e in graph.edges}
    assert {"attn", "resid", "ffn"} <= kinds
    # non-trivial: reads some earlier token and reaches the embeddings
    assert any(n["kind"] == "embed" for n in graph.nodes.values())
    assert any(e["kind"] == "attn" and e["source"] != e["target"] and graph.nodes[e["source"]]["pos"] < trace.n_positions - 1 for e in graph.edges)


def test_chat_template_wraps_the_prompt(smollm2):
    plain = smollm2.trace("Hi")
    chat = smollm2.trace("Hi", chat=True)
    assert len(chat.token_ids) > len(plain.token_ids)
    assert "<|im_start|>" in "".join(chat.tokens)
