"""Why a head attends (routes-math.md section 9): one pre-softmax score split into pairs of parts.

For head `h` of layer `l`, query position `i` and key position `j`, the score `s = scale * q_i . k_j`
(before soft-cap and mask) is a sum over pairs (query part a, key part b) of `scale * q^(a) . k^(b)`.
The parts of a residual `x[l, p]` (section 1) are: "embed" `x[0, p]`; for every layer l' < l each
head's write into p, the attention bias `b_O` (post-norm scale applied; computed as the attention
write minus its heads so the parts sum exactly) and the FFN write. With the attention input norm's
scale frozen at `x[l, p]` the norm is affine in the parts (its LayerNorm beta is a constant); so is
everything after it up to the query and key: projections, q/k norms frozen at their actual scale,
rotary at position p. The constant of that affine map (q/k biases, norm betas, through q/k norms
and rotary) is the part "bias".

The affine map is never rewritten per family: the layer's own attention module computes it, called
on a batch of rows as if they were N positions all at position p (rotary and position ids indexed
to p, no mask); the queries and keys its eager attention receives are recorded (trace/attention.py).
q/k norm submodules are frozen by a hook at the scale of the real row's input. A run-time check
proves the probe: on the real normalised row it must reproduce the model's own query and key.

Shapes: parts [N, d]; probed queries [N, H, dh], keys [N, Hkv, dh]; contributions [Nq, Nk] float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from ..models.adapters.base import Adapter
from ..trace.attention import AttentionCall, Recorder, recording
from ..trace.capture import model_lock
from ..trace.decompose import head_writes_at

if TYPE_CHECKING:
    from ..trace.trace import Trace

PROBE_ROWS = 512  # rows per call of the attention module (its eager scores are rows x rows)
# How closely the probe must rebuild the model's own query / key on the real row (relative).
PROBE_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8, torch.bfloat16: 5e-2, torch.float16: 1e-2}
MATRIX_SIDE = 6  # parts per side in to_dict's matrix, before "other"


@dataclass
class QKAttribution:
    """The score of one attention edge as a sum over (query part, key part) pairs."""

    layer: int
    head: int
    query: int
    key: int
    scale: float
    score: float  # scale * q . k from the model's own query and key
    capped: float | None  # the score after the soft-cap, when the model has one
    attention: float  # A[h, i, j], the model's own pattern
    query_parts: list[dict[str, Any]]  # {"name", "kind", "layer", "head"}
    key_parts: list[dict[str, Any]]
    contributions: torch.Tensor  # [Nq, Nk] float64: scale * q^(a) . k^(b)

    def to_dict(self, k: int = 20) -> dict[str, Any]:
        """JSON: totals per part, the top-k pairs by |value| and a small matrix that sums to the score."""
        c = self.contributions
        rows, cols = c.sum(1), c.sum(0)
        top = c.abs().flatten().topk(min(k, c.numel())).indices.tolist()
        pairs = [{"query": self.query_parts[n // c.shape[1]]["name"], "key": self.key_parts[n % c.shape[1]]["name"],
                  "value": float(c.flatten()[n])} for n in top]
        return {
            "layer": self.layer, "head": self.head, "query": self.query, "key": self.key,
            "scale": self.scale, "score": self.score, "capped": self.capped, "attention": self.attention,
            "parts_sum": float(c.sum()),
            "query_parts": [{**p, "total": float(t)} for p, t in zip(self.query_parts, rows)],
            "key_parts": [{**p, "total": float(t)} for p, t in zip(self.key_parts, cols)],
            "pairs": pairs,
            "matrix": _matrix(c, self.query_parts, self.key_parts),
        }


def _matrix(c: torch.Tensor, qparts: list[dict], kparts: list[dict]) -> dict[str, Any]:
    """The top parts per side by |total| plus an "other" row and column: every pair counted once."""
    r = c.sum(1).abs().argsort(descending=True)[:MATRIX_SIDE].tolist()
    s = c.sum(0).abs().argsort(descending=True)[:MATRIX_SIDE].tolist()
    row_groups = [[a] for a in r] + [[a for a in range(c.shape[0]) if a not in r]]
    col_groups = [[b] for b in s] + [[b for b in range(c.shape[1]) if b not in s]]
    values = [[float(c[ra][:, cb].sum()) if ra and cb else 0.0 for cb in col_groups] for ra in row_groups]
    return {"rows": [qparts[a]["name"] for a in r] + ["other"], "cols": [kparts[b]["name"] for b in s] + ["other"],
            "values": values}


# ---- the parts of a residual ----------------------------------------------------------------
def _part(name: str, kind: str, layer: int | None = None, head: int | None = None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "layer": layer, "head": head}


@torch.no_grad()
def residual_parts(trace: Trace, layer: int, pos: int) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The parts of `x[layer, pos]`: their names and vectors [N, d] fp32 on the layer's device (they
    sum to it)."""
    adapter = trace.adapter
    device = next(adapter.spec(layer).block.parameters()).device
    names, vectors = [_part("embed", "embed")], [trace.resid(0)[pos].float().to(device)]
    for l in range(layer):
        cap = trace.capture.layers[l]
        heads = head_writes_at(adapter, cap, l, pos).to(device)
        names += [_part(f"L{l} H{h}", "head", l, h) for h in range(heads.shape[0])]
        vectors += list(heads)
        if adapter.out_proj(l)[1] is not None:  # b_O, as what the heads leave of the write
            names.append(_part(f"L{l} attn bias", "attn_bias", l))
            vectors.append(cap.attn_write[pos].float().to(heads.device) - heads.sum(0))
        names.append(_part(f"L{l} FFN", "ffn", l))
        vectors.append(cap.ffn_write[pos].float().to(heads.device))
    return names, torch.stack(vectors)


# ---- norms frozen at their actual scale ---------------------------------------------------------
def frozen_norm(adapter: Adapter, norm: nn.Module, actual: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`norm` as the affine map it is once its scale is frozen at `actual` (normalising the last
    dim; `actual` broadcasts against the inputs): RMSNorm `g u / rms(actual)`, LayerNorm
    `w (u - mean u) / std(actual) + b`. Computed in fp32, returned in the input's dtype."""
    a, eps = actual.float(), adapter.norm_eps(norm)
    if adapter.is_layer_norm(norm):
        inv = torch.rsqrt(a.var(-1, unbiased=False, keepdim=True) + eps)
        weight = adapter.norm_gain(norm)  # (1 + w) where the family's norms say so; None without a gain
        weight = weight.to(a.device) if weight is not None else None
        bias = getattr(norm, "bias", None)
        bias = bias.float().to(a.device) if bias is not None else None

        def layer_norm(u: torch.Tensor) -> torch.Tensor:
            uf = u.float()
            out = (uf - uf.mean(-1, keepdim=True)) * inv
            out = out * weight if weight is not None else out
            return (out + bias if bias is not None else out).to(u.dtype)

        return layer_norm
    inv = torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + eps)
    gain = adapter.norm_gain(norm)
    gain = gain.to(a.device) if gain is not None else None

    def rms_norm(u: torch.Tensor) -> torch.Tensor:
        out = u.float() * inv
        return (out * gain if gain is not None else out).to(u.dtype)

    return rms_norm


def _is_norm(module: nn.Module) -> bool:
    """A norm itself, not a container of norms (StableLM's per-head q/k LayerNorms)."""
    if isinstance(module, nn.LayerNorm):
        return True
    return "norm" in type(module).__name__.lower() and next(module.children(), None) is None


# ---- the attention module as an affine map -----------------------------------------------------
class _Stop(Exception):
    pass


@torch.no_grad()
def attention_call(trace: Trace, layer: int) -> tuple[tuple, dict[str, Any]]:
    """The arguments block `layer` passed to its attention module (hidden states included),
    read by running the block on its stored input until the attention is called."""
    spec = trace.adapter.spec(layer)
    call = trace.capture.block_calls()[layer]
    seen: dict[str, Any] = {}

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["args"], seen["kwargs"] = args, kwargs
        raise _Stop

    device = next(spec.block.parameters()).device
    x = trace.resid(layer).to(device)[None]
    with model_lock(trace.adapter.model):  # other threads' hooks must not see this run, nor it theirs
        handle = spec.attn.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            spec.block(x, *call.args, **call.kwargs)
        except _Stop:
            pass
        finally:
            handle.remove()
    if "args" not in seen:
        raise UnsupportedArchitectureError(f"block {layer} never called its attention module")
    return seen["args"], seen["kwargs"]


class AttentionProbe:
    """`probe(rows)`: the queries [N, H, dh] and keys [N, Hkv, dh] the attention module of one layer
    computes from normalised input rows [N, d] placed at position `pos`, q/k norms frozen at the
    scale the real row `real` [d] gives them."""

    def __init__(self, trace: Trace, layer: int, pos: int, real: torch.Tensor) -> None:
        self.adapter, self.layer, self.pos = trace.adapter, layer, pos
        self.attn = trace.adapter.spec(layer).attn
        self.args, self.kwargs = attention_call(trace, layer)
        self.n_positions = trace.n_positions
        self.norms = [m for m in self.attn.modules() if m is not self.attn and _is_norm(m)]
        inputs: dict[int, torch.Tensor] = {}
        self.real = self._run(real[None], record=inputs)
        self.frozen = {id(m): frozen_norm(self.adapter, m, inputs[id(m)]) for m in self.norms if id(m) in inputs}

    def __call__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = [self._run(block, frozen=self.frozen) for block in rows.split(PROBE_ROWS)]
        return torch.cat([q for q, _ in out]), torch.cat([k for _, k in out])

    def _at(self, value: Any, index: torch.Tensor) -> Any:
        """A per-position argument (rotary cos/sin, position ids) indexed to `pos` for every row."""
        t = self.n_positions
        if isinstance(value, torch.Tensor):
            if value.dim() >= 2 and value.shape[0] == 1 and value.shape[1] == t:
                return value[:, index.to(value.device)]
            if value.dim() == 1 and value.shape[0] == t:
                return value[index.to(value.device)]
            return value
        if isinstance(value, (tuple, list)):
            return type(value)(self._at(v, index) for v in value)
        return value

    @torch.no_grad()
    def _run(self, rows: torch.Tensor, record: dict[int, torch.Tensor] | None = None,
             frozen: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        param = next(self.attn.parameters())
        hidden = rows.to(param.device, param.dtype)[None]
        index = torch.full((rows.shape[0],), self.pos, dtype=torch.long)
        kwargs = {k: self._at(v, index) for k, v in self.kwargs.items()}
        if "attention_mask" in kwargs:
            kwargs["attention_mask"] = None  # rows are not positions: nothing to mask
        if self.args:
            args = (hidden, *(self._at(a, index) for a in self.args[1:]))
        else:
            args, kwargs["hidden_states"] = (), hidden

        def hook(module: nn.Module, inputs: tuple, output: Any) -> Any:
            if record is not None:
                record[id(module)] = inputs[0].detach()
            if frozen is not None and id(module) in frozen:
                return frozen[id(module)](inputs[0])
            return None

        recorder = Recorder()
        with model_lock(self.adapter.model):
            handles = [m.register_forward_hook(hook) for m in self.norms]
            try:
                with recording(recorder):
                    self.attn(*args, **kwargs)
            finally:
                for h in handles:
                    h.remove()
        call = recorder.calls.get(id(self.attn))
        if call is None:
            raise UnsupportedArchitectureError(
                f"the attention of layer {self.layer} ({type(self.attn).__name__}) did not run through routelens' "
                "attention function, so its queries and keys cannot be read")
        return call.query[0].transpose(0, 1), call.key[0].transpose(0, 1)  # [N, H, dh], [N, Hkv, dh]


@torch.no_grad()
def position_parts(trace: Trace, layer: int, pos: int
                   ) -> tuple[list[dict[str, Any]], torch.Tensor, torch.Tensor]:
    """The parts of the query [N, H, dh] and of the key [N, Hkv, dh] at `pos` (fp32, the last part
    "bias"), with their names: each side sums to the model's own query / key at `pos` (checked)."""
    adapter = trace.adapter
    spec = adapter.spec(layer)
    cap = trace.capture.layers[layer]
    names, parts = residual_parts(trace, layer, pos)
    if spec.attn_norm is None:  # the attention reads the residual itself (OLMo 2's post-norm blocks)
        def norm(u: torch.Tensor) -> torch.Tensor:
            return u
    else:
        norm = frozen_norm(adapter, spec.attn_norm, trace.resid(layer)[pos].float().to(parts.device))
    const = norm(torch.zeros_like(parts[0]))  # LayerNorm beta (0 for RMSNorm)
    rows = torch.cat([torch.zeros_like(parts[:1]), const[None], norm(parts) - const])
    probe = AttentionProbe(trace, layer, pos, cap.attn_in[pos])
    q, k = probe(rows)
    sides = []
    for side, out, real, own in (("query", q, probe.real[0], cap.attention.query),
                                 ("key", k, probe.real[1], cap.attention.key)):
        own = own[0, :, pos]
        _check(real[0], own, layer, pos, side, "the attention module called on the real row")
        out = out.float()
        vectors = torch.cat([out[2:] - out[0], out[1:2]])  # linear parts Q(v) - Q(0), then the constant
        _check(vectors.sum(0), own, layer, pos, side, "the sum of its parts")
        sides.append(vectors)
    return names + [_part("bias", "bias")], sides[0], sides[1]


def _check(probe: torch.Tensor, own: torch.Tensor, layer: int, pos: int, side: str, what: str) -> None:
    """Refuse an attribution whose probe does not rebuild the model's own query / key."""
    tol = PROBE_TOLERANCE.get(own.dtype, 1e-4)
    own = own.float().to(probe.device)
    err = float((probe.float() - own).abs().max() / own.abs().max().clamp_min(1e-30))
    if not err <= tol:
        raise UnsupportedArchitectureError(
            f"{what} rebuilds the {side} of layer {layer} at position {pos} only to a relative error of {err:.1e} "
            f"(tolerance {tol:.0e}): this architecture's attention is not affine in its input as routelens assumes")


@torch.no_grad()
def attribute(trace: Trace, layer: int, head: int, query: int, key: int) -> QKAttribution:
    """Split the score of head `head` from `query` to `key` in `layer` into pairs of parts
    (arguments already checked: key <= query, not masked)."""
    cap = trace.capture.layers[layer]
    call = cap.attention
    if call.kwargs.get("alibi") is not None:
        raise UnsupportedArchitectureError(
            f"layer {layer} adds an ALiBi position bias to q . k (BLOOM, Falcon with alibi): the split of the "
            "q . k term alone would not sum to the score the softmax reads, and the ALiBi term is not split yet")
    kv = trace.adapter.kv_head_of(head)
    names_q, q_parts, k_here = position_parts(trace, layer, query)
    if key == query:
        names_k, k_parts = names_q, k_here
    else:
        names_k, _, k_parts = position_parts(trace, layer, key)
    scale = call.scores_scale()
    qa = q_parts[:, head].double().cpu()
    kb = k_parts[:, kv].double().cpu()
    contributions = scale * qa @ kb.t()
    score = scale * float(call.query[0, head, query].double().cpu() @ call.key[0, kv, key].double().cpu())
    cap_value = call.softcap
    return QKAttribution(
        layer=layer, head=head, query=query, key=key, scale=scale, score=score,
        capped=cap_value * math.tanh(score / cap_value) if cap_value else None,
        attention=float(cap.pattern_rows([query])[head, 0, key]),
        query_parts=names_q, key_parts=names_k, contributions=contributions,
    )


def masked(call: AttentionCall, query: int, key: int) -> bool:
    """Whether the model's mask removes `key` from the row of `query` (causal, sliding window)."""
    mask = call.mask
    if mask is None:
        return key > query
    value = mask[0, 0, query, key] if mask.dim() == 4 else mask[query, key]
    if value.dtype == torch.bool:
        return not bool(value)
    return float(value) <= torch.finfo(value.dtype).min / 2
