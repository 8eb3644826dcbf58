"""Exactness of routelens against the model's own numbers and a naive float64 reference.

For every family of tests/tiny_models.py:
(a) the run-time check: every write and residual is rebuilt to 1e-5, the logit lens of the last
    residual is the model's own logits (at every position, top tokens included);
(b) importances are non-negative and sum to 1 per node, bias share included;
(c) importances equal tests/reference.py (loops, float64) to 1e-6, for L1 and L2, attention nodes
    and FFN / block nodes, every layer, several positions, and per-neuron importances;
(d) the reference's parts rebuild the attention write the model computed;
(e) per-neuron parts sum to the FFN write;
(f) route-graph invariants at threshold 0.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass

import pytest
import torch

import routelens as rl
from routelens.errors import InvalidArgumentError
from routelens.routes import vocab
from routelens.trace.decompose import attention_parts, neuron_parts

from reference import Reference, final_norm_without_bias, importances
from tiny_models import FAMILIES, PARALLEL, PROMPT, SLIDING, TinyTokenizer

NAMES = sorted(FAMILIES)
T = len(PROMPT)
POSITIONS = [0, 1, 4, 7, T - 1]  # several positions: the first, one inside and one past the sliding window, the last
NEURON_POSITIONS = [2, T - 1]
WRITE_TOL = 1e-5  # fp32 reconstruction (routes-math.md section 2)
LENS_TOL = 1e-4
IMP_TOL = 1e-6


@dataclass
class Bundle:
    name: str
    hf: torch.nn.Module
    model: object  # routelens Model
    ref: Reference
    traces: dict

    def trace(self, norm: int = 1):
        return self.traces[norm]


@functools.lru_cache(maxsize=None)
def bundle(name: str) -> Bundle:
    hf = FAMILIES[name]()
    model = rl.wrap(hf, TinyTokenizer(), name=f"tiny-{name}")
    traces = {p: model.trace(PROMPT, norm=p) for p in (1, 2)}
    return Bundle(name, hf, model, Reference(hf, PROMPT), traces)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def is_parallel(name: str) -> bool:
    return name in PARALLEL


def test_every_family_is_covered():
    expected = {
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "opt",
        "gpt_neox", "gpt_neox_sequential", "phi", "gptj", "mixtral", "qwen2_moe", "qwen3_moe",
    }
    assert set(FAMILIES) == expected


@pytest.mark.parametrize("name", NAMES)
def test_tiny_model_is_what_it_claims(name):
    """The fixtures really exercise what they are for: fp32 eval, parallel flags, sliding windows."""
    b = bundle(name)
    assert not b.hf.training
    assert all(p.dtype == torch.float32 for p in b.hf.parameters())
    tr = b.trace()
    assert [tr.is_parallel(l) for l in range(tr.n_layers)] == [is_parallel(name)] * tr.n_layers
    if name in ("mistral", "gemma2", "gemma3_text"):
        # layer 0 uses a sliding window smaller than the prompt: the last token cannot see the first
        assert float(tr.capture.layers[0].pattern[:, T - 1, 0].abs().max()) == 0.0
        assert SLIDING < T
    if name in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mixtral", "qwen2_moe", "qwen3_moe", "phi"):
        assert b.model.adapter.n_kv_heads < b.model.adapter.n_heads  # grouped-query attention


# ---------------------------------------------------------------------------------------------
# (a) the run-time check and the logit lens
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_check_rows(name):
    tr = bundle(name).trace()
    report = tr.check()
    assert len(report.rows) == tr.n_layers
    for row in report.rows:
        assert row["attention"] <= WRITE_TOL, (row, str(report))
        assert row["ffn"] <= WRITE_TOL, (row, str(report))
        assert row["residual"] <= WRITE_TOL, (row, str(report))
    assert report.logit_lens_error <= LENS_TOL, str(report)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", NAMES)
def test_logit_lens_equals_model_logits_at_every_position(name):
    b = bundle(name)
    tr = b.trace()
    with torch.no_grad():
        logits = b.hf(input_ids=torch.tensor([PROMPT])).logits[0].float()
        via_adapter = b.model.adapter.unembed(tr.resid(tr.n_layers)).float()
    assert rel(via_adapter, logits) <= LENS_TOL
    lens = vocab.logit_lens(b.model.adapter, tr.resid(tr.n_layers))
    assert rel(lens, logits) <= LENS_TOL
    assert rel(tr.capture.last_logits, logits[-1]) <= LENS_TOL
    probs = logits.softmax(-1)
    for pos in range(T):
        top = tr.top_tokens("block", tr.n_layers - 1, pos, k=5)
        assert [t["id"] for t in top] == probs[pos].topk(5).indices.tolist()
        for t in top:
            assert abs(t["prob"] - float(probs[pos, t["id"]])) <= 1e-5
            assert t["token"] == f"[{t['id']}]"
    assert [p for _, p in tr.top_predictions(-1, k=3)] == pytest.approx(probs[-1].topk(3).values.tolist(), abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_direct_effect_of_the_whole_node_is_its_normed_logits(name):
    """routes-math.md section 5: W_U (g * z / rms(y)) (LayerNorm: centred, / std) with z = y gives
    the node's own logit lens without the norm's bias, the unembedding bias and any soft-cap."""
    b = bundle(name)
    tr = b.trace()
    w_u = b.model.adapter.lm_head().weight.double()
    for pos in (0, T - 1):
        for index in (1, tr.n_layers):
            y = tr.resid(index)[pos].float()
            effect = vocab.direct_effect(b.model.adapter, y, y)
            expected = w_u @ final_norm_without_bias(b.hf, y)
            assert rel(effect, expected) <= WRITE_TOL


# ---------------------------------------------------------------------------------------------
# What routelens captured is what the model computed (own hooks, output_attentions)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_capture_matches_independent_hooks(name):
    b = bundle(name)
    tr = b.trace()
    for l, (cap, mine) in enumerate(zip(tr.capture.layers, b.ref.layers)):
        assert rel(cap.resid_in, mine.x_in) <= 1e-6
        assert rel(cap.attn_in, mine.n_attn) <= 1e-6
        assert rel(cap.pattern, mine.pattern) <= 1e-6
        assert rel(cap.attn_write, mine.a) <= 1e-6
        assert rel(cap.ffn_in, mine.n_ffn) <= 1e-6
        assert rel(cap.ffn_write, mine.f) <= 1e-6
        assert rel(cap.resid_out, mine.x_out) <= 1e-6
        assert rel(tr.resid(l), mine.x_in) <= 1e-6
        assert rel(tr.resid(l + 1), mine.x_out) <= 1e-6
        if not tr.is_parallel(l):
            assert rel(tr.mid(l), mine.x_in + mine.a) <= 1e-6
        # causal pattern rows that sum to 1
        assert float(torch.triu(cap.pattern.float(), diagonal=1).abs().max()) == 0.0
        assert torch.allclose(cap.pattern.float().sum(-1), torch.ones(cap.pattern.shape[:2]), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# (b) importances: non-negative, sum to 1 per node (bias share included)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_importances_are_a_distribution(name, norm):
    tr = bundle(name).trace(norm)
    for l in range(tr.n_layers):
        for pos, row in tr.attention_rows(l, list(range(T))).items():
            assert row.heads.shape == (tr.adapter.n_heads, pos + 1)
            assert row.resid >= 0 and row.bias >= 0 and float(row.heads.min()) >= 0
            total = row.resid + float(row.heads.double().sum()) + row.bias
            if tr.is_parallel(l):
                assert row.ffn is not None and row.ffn >= 0
                total += row.ffn
            else:
                assert row.ffn is None
            assert abs(total - 1.0) <= IMP_TOL, (l, pos, total)
        if tr.is_parallel(l):
            with pytest.raises(InvalidArgumentError):
                tr.ffn_rows(l, [0])
            continue
        for pos, frow in tr.ffn_rows(l, list(range(T))).items():
            assert frow.resid >= 0 and frow.ffn >= 0
            assert abs(frow.resid + frow.ffn - 1.0) <= IMP_TOL


@pytest.mark.parametrize("name", ["llama", "gpt_neox"])
def test_negative_positions_mean_the_same_node(name):
    """`-1` is the last position: same row (all sources), not an empty one."""
    tr = bundle(name).trace()
    last = tr.attention_rows(1, [T - 1])[T - 1]
    neg = tr.attention_rows(1, [-1])[-1]
    assert neg.heads.shape == last.heads.shape == (tr.adapter.n_heads, T)
    assert neg.resid == last.resid and torch.equal(neg.heads, last.heads)
    if not tr.is_parallel(1):
        assert tr.ffn_rows(1, [-1])[-1] == tr.ffn_rows(1, [T - 1])[T - 1]


# ---------------------------------------------------------------------------------------------
# (c) importances equal the naive reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_attention_node_importances_match_reference(name, norm):
    b = bundle(name)
    tr = b.trace(norm)
    for l in range(tr.n_layers):
        rows = tr.attention_rows(l, POSITIONS)
        for pos in POSITIONS:
            y, parts = b.ref.attention_node(l, pos)
            c = importances(y, parts, norm)
            row = rows[pos]
            assert abs(row.resid - c["resid"]) <= IMP_TOL, (l, pos)
            assert abs(row.bias - c.get("bias", 0.0)) <= IMP_TOL, (l, pos)
            for h in range(b.ref.H):
                for j in range(pos + 1):
                    assert abs(float(row.heads[h, j]) - c[(h, j)]) <= IMP_TOL, (l, pos, h, j)
            if tr.is_parallel(l):
                assert abs(row.ffn - c["ffn"]) <= IMP_TOL, (l, pos)
            edge = row.edge_weights()
            for j in range(pos + 1):
                assert abs(float(edge[j]) - sum(c[(h, j)] for h in range(b.ref.H))) <= IMP_TOL


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("name", [n for n in NAMES if not is_parallel(n)])
def test_ffn_node_importances_match_reference(name, norm):
    b = bundle(name)
    tr = b.trace(norm)
    for l in range(tr.n_layers):
        rows = tr.ffn_rows(l, POSITIONS)
        for pos in POSITIONS:
            y, parts = b.ref.ffn_node(l, pos)
            c = importances(y, parts, norm)
            assert abs(rows[pos].resid - c["resid"]) <= IMP_TOL, (l, pos)
            assert abs(rows[pos].ffn - c["ffn"]) <= IMP_TOL, (l, pos)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_neuron_importances_match_reference(name, norm):
    b = bundle(name)
    tr = b.trace(norm)
    k = 8
    for l in range(tr.n_layers):
        for pos in NEURON_POSITIONS:
            top = tr.neurons(l, pos, k=k)
            y, parts = b.ref.neuron_node(l, pos)
            c = importances(y, parts, norm)
            labels, coef, _, _ = b.ref.neuron_parts(l, pos)
            coef_of = dict(zip(labels, coef.tolist()))
            scale = float(coef.abs().max())
            for item in top:
                assert abs(item["importance"] - c[item["neuron"]]) <= IMP_TOL, (l, pos, item)
                assert abs(item["activation"] - coef_of[item["neuron"]]) <= WRITE_TOL * scale, (l, pos, item)
            ref_top = sorted((c[lab] for lab in labels), reverse=True)[:k]
            assert [item["importance"] for item in top] == pytest.approx(ref_top, abs=IMP_TOL)


# ---------------------------------------------------------------------------------------------
# (d) parts rebuild the attention write; routelens' parts equal the reference's
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_reference_parts_rebuild_attention_write(name):
    b = bundle(name)
    tr = b.trace()
    for l in range(tr.n_layers):
        captured = tr.capture.layers[l].attn_write
        rebuilt = torch.stack([b.ref.attention_write(l, i) for i in range(T)])
        assert rel(rebuilt, b.ref.layers[l].a) <= WRITE_TOL  # the model's write, own hooks
        assert rel(rebuilt, captured) <= WRITE_TOL  # routelens' capture
        # routelens' own parts, part by part
        parts = attention_parts(b.model.adapter, tr.capture.layers[l], l)
        U = b.ref.head_writes(l)
        mine = torch.stack([torch.stack(U[h]) for h in range(b.ref.H)])  # [H, T, d]
        assert rel(parts.head_writes, mine) <= WRITE_TOL
        assert rel(parts.write(), b.ref.layers[l].a) <= WRITE_TOL
        for pos in (0, T - 1):
            ref_parts = b.ref.attention_parts(l, pos)
            for h in range(b.ref.H):
                head_total = sum(ref_parts[(h, j)] for j in range(pos + 1))
                assert rel(tr.head_write(l, pos, h), head_total) <= WRITE_TOL * float(
                    b.ref.layers[l].a.abs().max() / head_total.abs().max().clamp_min(1e-30)
                )


@pytest.mark.parametrize("name", NAMES)
def test_residual_is_the_sum_of_its_parts(name):
    """x[l+1] = x[l] + a + f for every layer, position, with a and f from the reference's parts."""
    b = bundle(name)
    for l, L in enumerate(b.ref.layers):
        for i in (0, T - 1):
            labels, _, writes, bias = b.ref.neuron_parts(l, i)
            f = writes.sum(0) + (bias if bias is not None else 0.0)
            rebuilt = L.x_in[i] + b.ref.attention_write(l, i) + f
            assert rel(rebuilt, L.x_out[i]) <= WRITE_TOL


# ---------------------------------------------------------------------------------------------
# (e) per-neuron parts sum to the FFN write
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_neuron_parts_sum_to_ffn_write(name):
    b = bundle(name)
    tr = b.trace()
    for l in range(tr.n_layers):
        cap = tr.capture.layers[l]
        scale = cap.ffn_write.float().abs().max()
        for pos in range(T):
            np_ = neuron_parts(b.model.adapter, cap, l, pos)
            bias = np_.bias * np_.scale if (np_.bias is not None and np_.scale is not None) else np_.bias
            total = np_.parts().sum(0) + (bias if bias is not None else 0.0)
            assert float((total - cap.ffn_write[pos].float()).abs().max() / scale) <= WRITE_TOL
            assert float((np_.write() - cap.ffn_write[pos].float()).abs().max() / scale) <= WRITE_TOL
            # the reference's neurons: same labels, same signed coefficients, same sum
            labels, coef, writes, ref_bias = b.ref.neuron_parts(l, pos)
            assert sorted(np_.labels) == sorted(labels)
            mine = dict(zip(labels, coef.tolist()))
            theirs = torch.tensor([mine[lab] for lab in np_.labels], dtype=torch.float64)
            assert rel(np_.coef, theirs) <= WRITE_TOL
            ref_total = writes.sum(0) + (ref_bias if ref_bias is not None else 0.0)
            assert float((ref_total - b.ref.layers[l].f[pos]).abs().max() / scale) <= WRITE_TOL


# ---------------------------------------------------------------------------------------------
# (f) route-graph invariants
# ---------------------------------------------------------------------------------------------
def _bias_share(tr, node) -> float:
    if node["kind"] == "attn":
        return tr.attention_rows(node["layer"], [node["pos"]])[node["pos"]].bias
    if node["kind"] == "block" and tr.is_parallel(node["layer"]):
        return tr.attention_rows(node["layer"], [node["pos"]])[node["pos"]].bias
    return 0.0


def _check_graph(name, tr, graph):
    incoming = defaultdict(float)
    ffn_in, ffn_out = {}, {}
    for e in graph.edges:
        assert e["weight"] > 0
        assert e["source"] in graph.nodes and e["target"] in graph.nodes
        if e["target"].startswith("f:"):
            ffn_in[e["target"]] = e["weight"]
            continue  # an FFN edge counts once: as the FFN node's outgoing edge
        if e["source"].startswith("f:"):
            ffn_out[e["source"]] = e["weight"]
        incoming[e["target"]] += e["weight"]
        if e["kind"] == "attn":
            assert sum(e["heads"].values()) == pytest.approx(e["weight"], abs=IMP_TOL)
    assert ffn_in == ffn_out  # x -> f -> x': the same weight on both halves
    for node_id, node in graph.nodes.items():
        if node["kind"] in ("embed", "ffn"):
            continue
        # threshold 0: every node the route reaches has all of its incoming edges
        assert node_id in incoming, node_id
        expected = 1.0 - _bias_share(tr, node)
        assert abs(incoming[node_id] - expected) <= IMP_TOL, (node_id, incoming[node_id], expected)
    kinds = {n["kind"] for n in graph.nodes.values()}
    if is_parallel(name):
        assert "attn" not in kinds
        assert not any(nid.startswith("a:") for nid in graph.nodes)
    else:
        assert "attn" in kinds
    assert {"embed", "block", "ffn"} <= kinds


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_graph_invariants(name, norm):
    tr = bundle(name).trace(norm)
    graph = tr.graph(target=-1, threshold=0.0)
    _check_graph(name, tr, graph)
    # the target is x[L, T-1]; with threshold 0 every position is reached at layer 0
    assert f"x:{tr.n_layers}:{T - 1}" in graph.nodes
    assert all(f"x:0:{p}" in graph.nodes for p in range(T))

    # the self edge through attention and the residual edge are two separate edges
    multi = graph.to_networkx()
    both = 0
    for l in range(tr.n_layers):
        for pos in range(T):
            node = f"x:{l + 1}:{pos}" if tr.is_parallel(l) else f"a:{l}:{pos}"
            src = f"x:{l}:{pos}"
            if node not in graph.nodes:
                continue
            kinds = {e["kind"]: e["weight"] for e in graph.edges if e["source"] == src and e["target"] == node}
            row = tr.attention_rows(l, [pos])[pos]
            if row.resid > 0:
                assert kinds["resid"] == pytest.approx(row.resid, abs=IMP_TOL)
            else:  # a zero-weight edge is not kept, even at threshold 0
                assert "resid" not in kinds
            if "attn" in kinds and "resid" in kinds:
                both += 1
                assert kinds["attn"] == pytest.approx(float(row.edge_weights()[pos]), abs=IMP_TOL)
                assert multi.number_of_edges(src, node) == 2
                assert set(multi[src][node]) == {"resid", "attn"}
    assert both > 0


@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt_neox", "gptj", "qwen2_moe"])
def test_graph_invariants_full_mode(name):
    tr = bundle(name).trace()
    graph = tr.graph(target="all", threshold=0.0)
    _check_graph(name, tr, graph)
    assert all(f"x:{tr.n_layers}:{p}" in graph.nodes for p in range(T))


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("name", ["llama", "gemma2", "phi"])
def test_rows_do_not_depend_on_batching_or_chunking(name, norm, monkeypatch):
    """One node at a time, all nodes at once, and the L1 path cut into tiny chunks agree."""
    from routelens.routes import kernels

    b = bundle(name)
    batched = b.trace(norm).attention_rows(1, list(range(T)))
    single = b.model.trace(PROMPT, norm=norm)
    monkeypatch.setattr(kernels, "EAGER_CHUNK_ELEMENTS", 1)  # one position per chunk
    for pos in reversed(range(T)):
        row = single.attention_rows(1, [pos])[pos]
        assert abs(row.resid - batched[pos].resid) <= IMP_TOL
        assert torch.allclose(row.heads, batched[pos].heads, atol=IMP_TOL, rtol=0)
    monkeypatch.setattr(kernels, "EAGER_CHUNK_ELEMENTS", 3 * b.model.adapter.n_heads * T * b.model.adapter.d_model)
    chunked = b.model.trace(PROMPT, norm=norm).attention_rows(1, list(range(T)))
    for pos in range(T):
        assert torch.allclose(chunked[pos].heads, batched[pos].heads, atol=IMP_TOL, rtol=0)


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_compiled_l1_kernel_matches_eager(name, monkeypatch):
    """The torch.compile'd L1 kernel (used for big jobs) gives the eager kernel's importances."""
    from routelens.routes import kernels

    b = bundle(name)
    eager = b.model.trace(PROMPT, norm=1)
    monkeypatch.setattr(kernels, "COMPILE_MIN_ELEMENTS", 0)
    compiled = b.model.trace(PROMPT, norm=1)
    for layer in range(eager.n_layers):
        want = eager.attention_rows(layer, list(range(T)))
        got = compiled.attention_rows(layer, list(range(T)))
        for pos in range(T):
            assert abs(got[pos].resid - want[pos].resid) <= IMP_TOL
            assert torch.allclose(got[pos].heads, want[pos].heads, atol=IMP_TOL, rtol=0)
    assert kernels._compiled, "torch.compile should build on the CI machine (gcc is installed)"
