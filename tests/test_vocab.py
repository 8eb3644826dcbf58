"""Vocabulary projections: logit lens, rank changes, promoted / suppressed tokens (signed)."""

from __future__ import annotations

import pytest
import torch
import transformers

import routelens as rl


class Tok:
    def __call__(self, text):
        return {"input_ids": [ord(c) % 61 for c in text]}

    def decode(self, ids):
        return f"<{ids[0]}>"


@pytest.fixture(scope="module")
def trace():
    torch.manual_seed(7)
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():
        hf.model.norm.weight.add_(torch.randn(32) * 0.3)
    return rl.wrap(hf, Tok()).trace("routes!")


def direct_effect_reference(trace, node: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
    """W_U @ (g * z / rms(y)) for the RMSNorm final norm, written out by hand in float64."""
    hf = trace.model.hf_model
    g = hf.model.norm.weight.detach().double()
    eps = hf.model.norm.variance_epsilon
    rms = (node.double().pow(2).mean() + eps).sqrt()
    return hf.lm_head.weight.detach().double() @ (g * write.double() / rms)


def test_neuron_promoted_tokens_follow_the_activation_sign(trace):
    layer, pos = 1, 3
    act = trace.capture.layers[layer].ffn_act[pos]
    neuron = int(act.argmin())  # a negative activation: its write points against W_out[:, k]
    assert act[neuron] < 0
    out = trace.neuron_write_tokens(layer, pos, neuron, k=5)
    w_out = trace.model.hf_model.model.layers[layer].mlp.down_proj.weight[:, neuron].detach()
    expected = direct_effect_reference(trace, trace.resid(layer + 1)[pos], act[neuron].double() * w_out.double())
    assert [t["id"] for t in out["promoted"]] == expected.topk(5).indices.tolist()
    assert [t["id"] for t in out["suppressed"]] == (-expected).topk(5).indices.tolist()
    for t in out["promoted"]:
        assert t["effect"] == pytest.approx(float(expected[t["id"]]), rel=1e-4, abs=1e-6)
    # the unsigned column would promote exactly the tokens the signed write suppresses
    unsigned = direct_effect_reference(trace, trace.resid(layer + 1)[pos], w_out.double())
    assert unsigned.topk(5).indices.tolist() == [t["id"] for t in out["suppressed"]]


def test_block_and_head_writes(trace):
    layer, pos = 0, 4
    cap = trace.capture.layers[layer]
    ffn = trace.block_write_tokens(layer, pos, "ffn", k=3)
    expected = direct_effect_reference(trace, trace.resid(layer + 1)[pos], cap.ffn_write[pos])
    assert [t["id"] for t in ffn["promoted"]] == expected.topk(3).indices.tolist()
    heads = torch.stack([trace.head_write(layer, pos, h) for h in range(4)])
    bias_free_attn = cap.attn_write[pos].float()  # Llama has no attention bias
    assert torch.allclose(heads.sum(0), bias_free_attn, atol=1e-5)
    head = trace.head_write_tokens(layer, pos, 2, k=3)
    expected = direct_effect_reference(trace, trace.mid(layer)[pos], heads[2])
    assert [t["id"] for t in head["promoted"]] == expected.topk(3).indices.tolist()


def test_logit_lens_probabilities_and_rank_change(trace):
    top = trace.top_tokens("block", 1, -1, k=4)
    hf = trace.model.hf_model
    with torch.no_grad():
        probs = hf(input_ids=torch.tensor([trace.token_ids])).logits[0, -1].softmax(-1)
    assert [t["id"] for t in top] == probs.topk(4).indices.tolist()
    for t in top:
        assert t["prob"] == pytest.approx(float(probs[t["id"]]), rel=1e-5)
    # rank change against the node below (after attention of the same block)
    below = trace.top_tokens("attn", 1, -1, k=61)
    rank_below = {t["id"]: t["rank"] for t in below}
    for t in top:
        assert t["rank_change"] == rank_below[t["id"]] - t["rank"]
    raw = trace.top_tokens("embed", 0, 0, k=3, apply_norm=False)
    assert raw[0]["rank_change"] is None
    with torch.no_grad():
        direct = hf.lm_head(trace.resid(0)[0]).softmax(-1)
    assert raw[0]["id"] == int(direct.argmax())


def test_check_command_fails_loudly(tmp_path, monkeypatch, capsys):
    """`routelens check` exits non-zero when a reconstruction is off."""
    from routelens import cli
    from routelens.trace import trace as trace_module

    original = trace_module.Trace.check

    def broken(self):
        report = original(self)
        report.rows[0]["ffn"] = 0.5
        return report

    from test_loading import save_tiny_model

    save_tiny_model(tmp_path, seed=5)
    assert cli.main(["check", str(tmp_path), "--prompt", "the capital of france is"]) == 0
    monkeypatch.setattr(trace_module.Trace, "check", broken)
    assert cli.main(["check", str(tmp_path), "--prompt", "the capital of france is"]) == 1
    assert "FAIL" in capsys.readouterr().out
