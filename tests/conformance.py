"""The conformance kit: any declared family, checked on tiny random-weight models built from its
declaration's `tiny` configs (docs/adding-a-model.md). tests/test_conformance.py runs it on every
registered family; a family added by a plug-in or a temporary module is picked up the same way.

What a family must satisfy (issue 12's "done when"):
- every layer's parts rebuild its attention write, FFN write and residual to 1e-5 relative (fp32);
- node importances (attention and FFN nodes, neurons; L1 and L2) equal tests/reference.py to 1e-6;
- the logit lens of the last residual equals the model's own logits to 1e-4, at every position.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

import routelens as rl
from routelens.models.adapters import Family, families, register_family, unregister_family
from routelens.routes import vocab

from reference import importances, reference_for
from tiny_models import D, FFN, HEADS, INIT, KV_HEADS, MAX_POS, PROMPT, VOCAB, TinyTokenizer, _perturb

WRITE_TOL = 1e-5
IMP_TOL = 1e-6
LENS_TOL = 1e-4
POSITIONS = [0, 4, len(PROMPT) - 1]

# What every tiny model has; a family's `tiny` dicts override it (aliases like GPT-2's n_embd are
# mapped by transformers' attribute_map).
BASE = dict(
    vocab_size=VOCAB, hidden_size=D, intermediate_size=FFN, num_hidden_layers=2, num_attention_heads=HEADS,
    num_key_value_heads=KV_HEADS, max_position_embeddings=MAX_POS, initializer_range=INIT,
    tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)


@dataclass(frozen=True)
class Case:
    """One tiny model to check: a family, one of its model types, one of its tiny variants."""

    family: Family
    model_type: str
    variant: int

    @property
    def id(self) -> str:
        return f"{self.model_type}-{self.variant}" if len(self.family.tiny) > 1 else self.model_type


def cases(only: list[Family] | None = None) -> list[Case]:
    out = []
    for family in only if only is not None else families():
        for model_type in family.model_types:
            for variant in range(len(family.tiny)):
                out.append(Case(family, model_type, variant))
    return out


def build(case: Case) -> nn.Module:
    """The case's tiny model: fp32, eval, eager attention, every norm gain and bias moved off its init."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    tiny = dict(case.family.tiny[case.variant])
    sub = case.family.text_config
    if sub is not None:  # a multimodal config: the tiny numbers go to its text decoder's config
        overrides = {**tiny, sub: {**BASE, **tiny.get(sub, {})}}
    else:
        overrides = {**BASE, **tiny}
    torch.manual_seed(sum(map(ord, case.id)))
    config = AutoConfig.for_model(case.model_type, **overrides)
    config._attn_implementation = "eager"
    if case.family.tiny_class is not None:
        model = getattr(transformers, case.family.tiny_class)(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    model = model.float().eval()
    _perturb(model, sum(map(ord, case.id)))
    return model


@dataclass
class Checked:
    case: Case
    hf: nn.Module
    model: rl.Model
    traces: dict


@functools.lru_cache(maxsize=None)
def checked(case: Case) -> Checked:
    hf = build(case)
    known = case.family in families()
    register_family(case.family)  # the case's own declaration, even where another one covers its type
    try:
        model = rl.wrap(hf, TinyTokenizer(), name=f"tiny-{case.id}")
    finally:
        if not known:
            unregister_family(case.family)
    assert model.adapter.family == case.family.name, (model.adapter.family, case.family.name)
    return Checked(case, hf, model, {p: model.trace(PROMPT, norm=p) for p in (1, 2)})


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_writes(c: Checked) -> None:
    report = c.traces[1].check()
    assert len(report.rows) == c.traces[1].n_layers
    for row in report.rows:
        for part in ("attention", "ffn", "residual"):
            assert row[part] <= WRITE_TOL, f"{c.case.id} layer {row['layer']}: {part} rebuilt to {row[part]:.2e}"
    assert report.ok, str(report)


def check_logit_lens(c: Checked, ref) -> None:
    trace = c.traces[1]
    last = trace.resid(trace.n_layers).float()
    lens = vocab.logit_lens(c.model.adapter, last)  # [T, V]
    error = rel(lens, ref.logits)
    assert rel(trace.capture.last_logits, ref.logits[-1]) <= LENS_TOL, f"{c.case.id}: the trace's own logits"
    assert error <= LENS_TOL, f"{c.case.id}: logit lens of the last residual vs the model's logits: {error:.2e}"


def check_importances(c: Checked, ref) -> None:
    """Attention nodes (residual, bias, every head x source; the FFN part of a parallel block), FFN
    nodes and the top neurons, L1 and L2, every layer, several positions, against the reference."""
    for p in (1, 2):
        trace = c.traces[p]
        for layer in range(trace.n_layers):
            rows = trace.attention_rows(layer, POSITIONS)
            ffn_rows = None if trace.is_parallel(layer) else trace.ffn_rows(layer, POSITIONS)
            for pos in POSITIONS:
                where = f"{c.case.id} L{p} layer {layer} position {pos}"
                y, parts = ref.attention_node(layer, pos)
                want = importances(y, parts, p)
                row = rows[pos]
                _near(row.resid, want["resid"], f"{where}: attention node, residual part")
                _near(row.bias, want.get("bias", 0.0), f"{where}: attention node, bias part")
                for h in range(ref.H):
                    for j in range(pos + 1):
                        _near(float(row.heads[h, j]), want[(h, j)], f"{where}: head {h} source {j}")
                if trace.is_parallel(layer):
                    _near(row.ffn, want["ffn"], f"{where}: attention node, FFN part (parallel block)")
                else:
                    y, parts = ref.ffn_node(layer, pos)
                    want = importances(y, parts, p)
                    _near(ffn_rows[pos].resid, want["resid"], f"{where}: FFN node, residual part")
                    _near(ffn_rows[pos].ffn, want["ffn"], f"{where}: FFN node, FFN part")
                y, parts = ref.neuron_node(layer, pos)
                want = importances(y, parts, p)
                top = trace.neurons(layer, pos, k=8)
                for item in top:
                    _near(item["importance"], want[item["neuron"]], f"{where}: neuron {item['neuron']}")
                best = sorted((v for k, v in want.items() if k not in ("resid", "bias")), reverse=True)[:8]
                for item, value in zip(top, best):
                    _near(item["importance"], value, f"{where}: the top neurons are the reference's")


def _near(got: float, want: float, what: str) -> None:
    assert abs(got - want) <= IMP_TOL, f"{what}: {got:.9f}, reference {want:.9f}"


def run(case: Case) -> None:
    """Every check of the kit on one case (raises AssertionError naming what differs)."""
    c = checked(case)
    ref = reference_for(c.hf, PROMPT, case.family)
    check_writes(c)
    check_logit_lens(c, ref)
    check_importances(c, ref)
