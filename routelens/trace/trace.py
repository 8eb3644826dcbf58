"""A traced prompt: the captured forward pass plus lazily computed, cached node importances.

Longer than most modules on purpose: `Trace` is the one object users hold, and each of its
methods is a short entry point into the math of routes/ (importances, graphs, projections, the
query-key split); splitting the class would scatter its public surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import InvalidArgumentError, NonFiniteError
from ..routes import vocab
from ..routes.nodes import attention_node_importances, ffn_node_importances, neuron_importances
from .capture import Capture
from .contrastive import ContrastMixin
from .rows import AttentionRow, FfnRow
from ..routes.verify import CURVE_THRESHOLDS
from .finite import non_finite_message
from .decompose import attention_parts, check_capture, head_writes_at, neuron_parts

if TYPE_CHECKING:
    from ..models.model import Model
    from ..routes.qk import QKAttribution
    from ..routes.graph import RouteGraph


@dataclass
class CheckReport:
    """How exactly the decomposition rebuilds the model's own numbers."""

    rows: list[dict[str, float]]
    logit_lens_error: float
    tolerance: float
    dtype: str
    extra: dict[str, Any] = field(default_factory=dict)

    def _errors(self) -> list[tuple[str, float]]:
        """Every error with a name for it: ("layer 3 ffn", 2e-7), ..., ("logit lens", 1e-6)."""
        out = [(f"layer {r['layer']} {part}", float(r[part])) for r in self.rows for part in PARTS]
        return out + [("logit lens", float(self.logit_lens_error))]

    def non_finite(self) -> list[str]:
        """The errors that are NaN or infinite, by name ("layer 7 residual", "logit lens")."""
        return [name for name, e in self._errors() if not math.isfinite(e)]

    @property
    def max_error(self) -> float:
        """The largest error; NaN when any error is NaN, infinity when any is infinite (never a
        finite number that silently dropped a NaN, as Python's max() would)."""
        return worst_error(e for _, e in self._errors())

    @property
    def ok(self) -> bool:
        return math.isfinite(self.max_error) and self.max_error <= self.tolerance

    def __str__(self) -> str:
        lines = [f"{'layer':>5} {'attention':>10} {'ffn':>10} {'residual':>10}"]
        for r in self.rows:
            lines.append(f"{r['layer']:>5} {r['attention']:>10.2e} {r['ffn']:>10.2e} {r['residual']:>10.2e}")
        lines.append(f"logit lens at the last layer vs model logits: {self.logit_lens_error:.2e}")
        bad = self.non_finite()
        if bad:
            shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
            lines.append(f"FAIL: non-finite error (NaN or infinity) at {shown} "
                         f"(tolerance {self.tolerance:.0e}, {self.dtype})")
        else:
            verdict = "PASS" if self.ok else "FAIL"
            lines.append(f"{verdict}: max relative error {self.max_error:.2e} (tolerance {self.tolerance:.0e}, {self.dtype})")
        return "\n".join(lines)


PARTS = ("attention", "ffn", "residual")


def worst_error(errors: Any) -> float:
    """max() over errors that keeps non-finite ones: NaN if any is NaN, else inf if any is inf, else
    the largest (0.0 for none). Python's max() drops a NaN depending on where it stands."""
    worst = 0.0
    for e in errors:
        e = float(e)
        if math.isnan(e):
            return math.nan
        if not e <= worst:
            worst = e
    return worst


# Reconstruction tolerance per compute dtype: fp32 is the contract; half precisions round each write.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-9, torch.bfloat16: 3e-2, torch.float16: 5e-3}


class Trace(ContrastMixin):
    """One prompt run through one model, decomposed. Importances are computed on demand and kept."""

    def __init__(self, model: Model, capture: Capture, *, norm: int = 1) -> None:
        if norm not in (1, 2):
            raise InvalidArgumentError(f"norm must be 1 (L1, the default) or 2 (L2), not {norm!r}")
        self.model = model
        self.adapter = model.adapter
        self.capture = capture
        self.norm = norm
        self.token_ids: list[int] = capture.token_ids.tolist()
        # labels faithful to the bytes (models/tokens.py): "<E6 97>" for a piece of a character
        self.tokens: list[str] = model.token_labels(self.token_ids)
        self.token_bytes: list[str] = [b.hex() for b in model.token_bytes(self.token_ids)]  # hex, per token
        self._attn_rows: list[dict[int, AttentionRow]] = [{} for _ in range(capture.n_layers)]
        self._ffn_rows: list[dict[int, FfnRow]] = [{} for _ in range(capture.n_layers)]
        self._parallel = [self.adapter.spec(i).parallel for i in range(self.adapter.n_layers)]
        self._predictions: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # k -> (ids, probs) [T, k]
        self._unsaved: set[tuple[str, int, int]] = set()  # rows computed since the store last saw them
        self.on_new_rows: Callable[[Trace], None] | None = None  # the store's writer, when one is attached

    def __repr__(self) -> str:
        from ..models.tokens import rebuild_text

        text = rebuild_text(self.tokens)
        shown = text if len(text) <= 60 else text[:57] + "..."
        return (f"<routelens.Trace {self.model.name!r}, {self.n_positions} tokens {shown!r}, "
                f"{self.n_layers} layers, L{self.norm} proximity>")

    # ---- the residual stream ---------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.capture.n_layers

    @property
    def n_positions(self) -> int:
        return len(self.token_ids)

    def is_parallel(self, layer: int) -> bool:
        return self._parallel[layer]

    def resid(self, index: int) -> torch.Tensor:
        """`x[index]` for index in 0..n_layers: [T, d] (0 = embeddings)."""
        return self.capture.resid(index)

    def mid(self, layer: int) -> torch.Tensor:
        """`m[layer] = x[layer] + a[layer]`, the node after attention of a sequential block."""
        cap = self.capture.layers[layer]
        return cap.resid_in.float() + cap.attn_write.float()

    def position(self, pos: int) -> int:
        """Normalise a possibly negative position, or raise a clear error."""
        n = self.n_positions
        if not isinstance(pos, int) or not -n <= pos < n:
            raise InvalidArgumentError(f"position {pos!r} is out of range for a prompt of {n} tokens (use 0..{n - 1} or -1)")
        return pos % n

    @staticmethod
    def check_k(k: int) -> int:
        """How many entries a list asks for: a whole number, at least 1 (more than there are gives
        them all), or InvalidArgumentError."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidArgumentError(f"k must be a whole number of entries, 1 or more, not {k!r}")
        return k

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise InvalidArgumentError(f"layer {layer!r} is out of range: the model has layers 0..{self.n_layers - 1}")
        return layer

    # ---- importances -------------------------------------------------------------------------
    def attention_rows(self, layer: int, positions: list[int]) -> dict[int, AttentionRow]:
        """Importances of the node after attention at each position (cached)."""
        cache = self._attn_rows[layer]
        index = [self.position(p) for p in positions]  # -1 is the last position, not "no sources"
        missing = sorted({p for p in index if p not in cache})
        if missing:
            cap = self.capture.layers[layer]
            parts = attention_parts(self.adapter, cap, layer)
            if self.is_parallel(layer):
                node, ffn = self.resid(layer + 1), cap.ffn_write
            else:
                node, ffn = self.mid(layer), None
            imp = attention_node_importances(parts, missing, cap.resid_in, node, self.norm, ffn)
            for k, pos in enumerate(missing):
                cache[pos] = AttentionRow(
                    resid=float(imp.resid[k]),
                    heads=imp.heads[k, :, : pos + 1].cpu().contiguous(),  # a copy: a view would pin the whole batch
                    bias=float(imp.bias[k]),
                    ffn=float(imp.ffn[k]) if imp.ffn is not None else None,
                    degenerate=bool(imp.degenerate[k]),
                )
                self._unsaved.add(("attn", layer, pos))
        return {p: cache[q] for p, q in zip(positions, index)}

    def ffn_rows(self, layer: int, positions: list[int]) -> dict[int, FfnRow]:
        """Importances of `x[l+1] = m + f` at each position of a sequential block (cached)."""
        if self.is_parallel(layer):
            raise InvalidArgumentError("a parallel block has no separate FFN-output node; use attention_rows")
        cache = self._ffn_rows[layer]
        index = [self.position(p) for p in positions]
        missing = sorted({p for p in index if p not in cache})
        if missing:
            cap = self.capture.layers[layer]
            imp = ffn_node_importances(missing, self.mid(layer), cap.ffn_write, self.resid(layer + 1), self.norm)
            for k, pos in enumerate(missing):
                cache[pos] = FfnRow(resid=float(imp.resid[k]), ffn=float(imp.ffn[k]), degenerate=bool(imp.degenerate[k]))
                self._unsaved.add(("ffn", layer, pos))
        return {p: cache[q] for p, q in zip(positions, index)}

    def bias_share(self, kind: str, layer: int, pos: int) -> float | None:
        """The share of a node's value that no incoming edge carries (docs/graph-format.md): the
        attention output bias `b_O` for a node after attention and for a parallel block's output,
        0 for a sequential block's output (its parts are `m` and the FFN write, `b_out` inside the
        latter), None for an embedding (no parts) or an FFN node (not a residual node)."""
        if kind not in ("attn", "block"):
            return None
        layer, pos = self.check_layer(layer), self.position(pos)
        if kind == "block" and not self.is_parallel(layer):
            return 0.0
        if kind == "attn" and self.is_parallel(layer):
            raise InvalidArgumentError("a parallel block has no node after attention")
        return self.attention_rows(layer, [pos])[pos].bias

    # ---- routes --------------------------------------------------------------------------------
    def graph(self, target: int | str | list[int] = -1, threshold: float = 0.04, *,
              max_edges: int | None = None, token: int | str | None = None,
              foil: int | str | None = None) -> RouteGraph:
        """The route graph from `x[L, target]` pruned at `threshold` (target="all": full mode).
        With `max_edges`, a graph that grows past it raises TooLargeError while it is built.

        `foil` (a token's text or id): the contrastive route "why `token` rather than `foil`"
        (routes-math.md section 8, docs/contrastive.md); `token` defaults to the model's top
        prediction at the target. foil == token raises InvalidArgumentError."""
        from ..routes.graph import build_route

        if not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) <= 1.0:
            raise InvalidArgumentError(f"threshold must be a number between 0 and 1, not {threshold!r}")
        if target == "all":
            targets = list(range(self.n_positions))
        elif isinstance(target, list):
            targets = sorted({self.position(t) for t in target})
        else:
            targets = [self.position(target)]
        direction = None
        if foil is not None or token is not None:
            if len(targets) != 1:
                raise InvalidArgumentError("a token or foil belongs to one target position; pick one position, not "
                                           f"{'all' if target == 'all' else len(targets)}")
            if foil is not None:
                direction = self.contrast(targets[0], token, foil)
        graph = build_route(self, targets, float(threshold), full=target == "all", max_edges=max_edges,
                            contrast=direction)
        if token is not None and foil is None:
            tid = self.token_id(token, pos=targets[0])
            graph.target.update({"token": self.model.token_strings([tid])[0], "token_id": tid})
        self._hand_to_store()
        return graph

    def show(self, target: int | str | list[int] = -1, threshold: float = 0.04, height: int = 640) -> Any:
        """In a notebook: the route graph drawn inline, interactive (hover, zoom, threshold)."""
        return self.graph(target=target, threshold=threshold).show(height=height)

    def _hand_to_store(self) -> None:
        if self._unsaved and self.on_new_rows is not None:
            self.on_new_rows(self)

    # ---- rows kept by the trace store --------------------------------------------------------
    def restore_rows(self, attn: dict[tuple[int, int], AttentionRow], ffn: dict[tuple[int, int], FfnRow],
                     predictions: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        """Put importance rows and predictions computed earlier (read from the store) back."""
        self._predictions.update(predictions or {})
        for (layer, pos), row in attn.items():
            self._attn_rows[layer][pos] = row
        for (layer, pos), frow in ffn.items():
            self._ffn_rows[layer][pos] = frow

    def all_rows(self) -> tuple[dict[tuple[int, int], AttentionRow], dict[tuple[int, int], FfnRow],
                                dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Every row and prediction computed or restored so far (what a merged store segment holds)."""
        attn = {(layer, pos): row for layer, rows in enumerate(self._attn_rows) for pos, row in rows.items()}
        ffn = {(layer, pos): row for layer, rows in enumerate(self._ffn_rows) for pos, row in rows.items()}
        return attn, ffn, dict(self._predictions)

    def take_unsaved_rows(self) -> tuple[dict[tuple[int, int], AttentionRow], dict[tuple[int, int], FfnRow],
                                         dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """What was computed since the last call: rows keyed (layer, position), predictions by k."""
        attn = {(layer, pos): self._attn_rows[layer][pos] for kind, layer, pos in self._unsaved if kind == "attn"}
        ffn = {(layer, pos): self._ffn_rows[layer][pos] for kind, layer, pos in self._unsaved if kind == "ffn"}
        preds = {k: self._predictions[k] for kind, k, _ in self._unsaved if kind == "pred"}
        self._unsaved.clear()
        return attn, ffn, preds

    # ---- vocabulary ---------------------------------------------------------------------------
    def node_value(self, kind: str, layer: int, pos: int) -> torch.Tensor:
        """The residual vector of a node: kind embed (layer ignored), attn (m[l]), block (x[l+1])."""
        pos = self.position(pos)
        if kind == "embed":
            return self.resid(0)[pos].float()
        layer = self.check_layer(layer)
        if kind == "block":
            return self.resid(layer + 1)[pos].float()
        if kind == "attn":
            if self.is_parallel(layer):
                raise InvalidArgumentError("a parallel block has no node after attention")
            return self.mid(layer)[pos]
        raise InvalidArgumentError(f"node kind must be embed, attn or block, not {kind!r}")

    def previous_node(self, kind: str, layer: int) -> tuple[str, int] | None:
        """The node just below one in the same position (for rank changes)."""
        if kind == "embed":
            return None
        if kind == "attn":
            return ("embed", -1) if layer == 0 else ("block", layer - 1)
        if self.is_parallel(layer):
            return ("embed", -1) if layer == 0 else ("block", layer - 1)
        return ("attn", layer)

    def top_predictions(self, pos: int = -1, k: int = 5) -> list[tuple[str, float]]:
        """The model's own next-token prediction at `pos`: [(token, probability), ...]."""
        k = self.check_k(k)
        probs = self._lens("block", self.n_layers - 1, pos, True).softmax(-1)
        ids, values = vocab.top_k(probs, k)
        return list(zip(self.model.token_strings(ids), values))

    def predictions(self, k: int = 5, chunk: int | None = None) -> list[list[dict]]:
        """The model's top-k next-token predictions at every position: one batched projection of
        the last residual stream, in blocks of `chunk` positions (default: ~32M logits a block)."""
        k = self.check_k(k)
        if chunk is None:
            chunk = max(16, (1 << 25) // max(1, self.adapter.vocab_size))
        if k not in self._predictions:
            final = self.resid(self.n_layers)
            ids, values = [], []
            for start in range(0, self.n_positions, chunk):
                logits = vocab.logit_lens(self.adapter, final[start : start + chunk])
                bad = (~torch.isfinite(logits)).any(-1).nonzero()  # fp16 unembedding overflow: no NaN probability
                if bad.numel():
                    raise self._not_finite(None, start + int(bad[0, 0]), "logits", logits[int(bad[0, 0])])
                v, i = logits.softmax(-1).topk(min(k, logits.shape[-1]), dim=-1)
                ids.append(i.cpu())
                values.append(v.float().cpu())
            self._predictions[k] = (torch.cat(ids), torch.cat(values))
            self._unsaved.add(("pred", k, 0))
            self._hand_to_store()
        ids_t, values_t = self._predictions[k]
        out: list[list[dict]] = []
        for row_ids, row_values in zip(ids_t.tolist(), values_t.tolist()):
            names, raw = self.model.token_strings(row_ids), self.model.token_bytes(row_ids)
            out.append([{"token": n, "id": i, "prob": p, "bytes": b.hex()}
                        for n, i, p, b in zip(names, row_ids, row_values, raw)])
        return out

    def top_tokens(self, kind: str, layer: int, pos: int, k: int = 10, *, apply_norm: bool = True) -> list[dict]:
        """Logit lens of a node: top tokens with probability and rank change vs the node below."""
        k = self.check_k(k)
        logits = self._lens(kind, layer, pos, apply_norm)
        probs = logits.softmax(-1)
        ids, _ = vocab.top_k(probs, k)
        prev = self.previous_node(kind, layer if kind != "embed" else 0)
        prev_ranks: list[int | None] = [None] * len(ids)
        if prev is not None:
            prev_logits = self._lens(prev[0], prev[1], pos, apply_norm)
            prev_ranks = list(vocab.ranks_of(prev_logits, ids))
        names, raw = self.model.token_strings(ids), self.model.token_bytes(ids)
        return [
            {
                "token": name,
                "id": tid,
                "bytes": raw[rank].hex(),
                "prob": float(probs[tid]),
                "rank": rank,
                "rank_change": (prev_rank - rank) if prev_rank is not None else None,
            }
            for rank, (tid, name, prev_rank) in enumerate(zip(ids, names, prev_ranks))
        ]

    def _not_finite(self, layer: int | None, pos: int, part: str, values: torch.Tensor) -> NonFiniteError:
        """The error for a view of a (finite) trace that overflowed the model's dtype."""
        dtype = next(self.adapter.model.parameters()).dtype
        message = non_finite_message(layer, pos, part, values, dtype, consequence="so it cannot be shown")
        return NonFiniteError(message, layer=layer, pos=pos, part=part)

    def _lens(self, kind: str, layer: int, pos: int, apply_norm: bool) -> torch.Tensor:
        """The logit lens of a node, finite (the unembedding runs in the model's dtype: fp16 can overflow)."""
        logits = vocab.logit_lens(self.adapter, self.node_value(kind, layer, pos), apply_norm=apply_norm)
        if bool(torch.isfinite(logits).all()):
            return logits
        where = None if kind == "embed" else layer
        raise self._not_finite(where, self.position(pos), f"logit lens of the {kind} node", logits)

    def _effect_tokens(self, node: torch.Tensor, write: torch.Tensor, k: int, layer: int = 0,
                       pos: int = -1) -> dict[str, list[dict]]:
        k = self.check_k(k)
        effect = vocab.direct_effect(self.adapter, node, write)
        if not bool(torch.isfinite(effect).all()):
            raise self._not_finite(layer, self.position(pos), "direct effect of the write on the logits", effect)
        k = min(k, effect.shape[-1])  # a vocabulary smaller than k: all of it
        top_vals, top_ids = effect.topk(k)
        low_vals, low_ids = (-effect).topk(k)
        return {
            "promoted": [
                {"token": t, "id": i, "effect": float(v), "bytes": b.hex()}
                for t, i, v, b in zip(self.model.token_strings(top_ids.tolist()), top_ids.tolist(), top_vals,
                                      self.model.token_bytes(top_ids.tolist()))
            ],
            "suppressed": [
                {"token": t, "id": i, "effect": float(-v), "bytes": b.hex()}
                for t, i, v, b in zip(self.model.token_strings(low_ids.tolist()), low_ids.tolist(), low_vals,
                                      self.model.token_bytes(low_ids.tolist()))
            ],
        }

    def block_write_tokens(self, layer: int, pos: int, part: str = "block", k: int = 10) -> dict[str, list[dict]]:
        """Promoted / suppressed tokens of a write: part = attn, ffn or block (attention + FFN)."""
        layer, pos = self.check_layer(layer), self.position(pos)
        cap = self.capture.layers[layer]
        writes = {"attn": cap.attn_write, "ffn": cap.ffn_write}
        if part == "block":
            write = cap.attn_write[pos].float() + cap.ffn_write[pos].float()
            node = self.resid(layer + 1)[pos]
        elif part in writes:
            write = writes[part][pos].float()
            node = self.resid(layer + 1)[pos] if part == "ffn" or self.is_parallel(layer) else self.mid(layer)[pos]
        else:
            raise InvalidArgumentError(f"part must be attn, ffn or block, not {part!r}")
        return self._effect_tokens(node.float(), write, k, layer, pos)

    def head_write(self, layer: int, pos: int, head: int) -> torch.Tensor:
        """One head's whole write into `pos` (all sources, post-norm scale applied, bias excluded)."""
        layer, pos = self.check_layer(layer), self.position(pos)
        if not isinstance(head, int) or not 0 <= head < self.adapter.n_heads:
            raise InvalidArgumentError(f"head {head!r} is out of range: the model has heads 0..{self.adapter.n_heads - 1}")
        return head_writes_at(self.adapter, self.capture.layers[layer], layer, pos)[head]

    def head_write_tokens(self, layer: int, pos: int, head: int, k: int = 10) -> dict[str, list[dict]]:
        write = self.head_write(layer, pos, head)
        node = self.resid(layer + 1)[pos] if self.is_parallel(layer) else self.mid(layer)[pos]
        return self._effect_tokens(node.float(), write, k, layer, pos)

    def neuron_shares(self, layer: int, pos: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Every FFN neuron's importance in the block-output node `x[layer+1, pos]` (routes-math.md
        section 3, neurons): (labels, importances [N], signed activations [N]). For a mixture of
        experts, only the routed experts' neurons (the others wrote nothing)."""
        layer, pos = self.check_layer(layer), self.position(pos)
        cap = self.capture.layers[layer]
        parts = neuron_parts(self.adapter, cap, layer, pos)
        node = self.resid(layer + 1)[pos].float()
        rest = node - cap.ffn_write[pos].float()
        bias = None
        if parts.bias is not None:
            bias = parts.bias * parts.scale if parts.scale is not None else parts.bias
        c, _, _ = neuron_importances(node, rest, parts.parts(), bias, self.norm)
        return list(parts.labels), c, parts.coef

    def neurons(self, layer: int, pos: int, k: int = 20) -> list[dict]:
        """Top FFN neurons at a position by importance, with their signed activations."""
        k = self.check_k(k)
        labels, c, coef = self.neuron_shares(layer, pos)
        order = c.argsort(descending=True)[:k].tolist()
        return [{"neuron": labels[n], "index": n, "importance": float(c[n]), "activation": float(coef[n])}
                for n in order]

    def neuron_write_tokens(self, layer: int, pos: int, neuron: int, k: int = 10) -> dict[str, list[dict]]:
        """Promoted / suppressed tokens of one neuron's signed write `act_k * W_out[:, k]`."""
        layer, pos = self.check_layer(layer), self.position(pos)
        parts = neuron_parts(self.adapter, self.capture.layers[layer], layer, pos)
        if not isinstance(neuron, int) or not 0 <= neuron < parts.coef.shape[0]:
            raise InvalidArgumentError(f"neuron {neuron!r} is out of range: 0..{parts.coef.shape[0] - 1}")
        write = parts.columns[:, neuron] * parts.coef[neuron]
        if parts.scale is not None:
            write = write * parts.scale
        return self._effect_tokens(self.resid(layer + 1)[pos].float(), write, k, layer, pos)

    def importance_sums_error(self) -> float:
        """Largest |sum of a node's importances (bias share included) - 1| over the full route."""
        self.graph(target=-1, threshold=0.0)
        gaps = []
        for layer in range(self.n_layers):
            for row in self._attn_rows[layer].values():
                total = row.resid + float(row.heads.sum()) + row.bias + (row.ffn or 0.0)
                gaps.append(abs(total - 1.0))
            for frow in self._ffn_rows[layer].values():
                gaps.append(abs(frow.resid + frow.ffn - 1.0))
        return worst_error(gaps)  # NaN when any sum is NaN: a caller comparing `<= tol` then fails

    def why_attends(self, layer: int, head: int, query: int, key: int) -> QKAttribution:
        """Why head `head` of `layer` attends from `query` to `key`: its pre-softmax score split
        exactly into (query part, key part) pairs (routes-math.md section 9, routes/qk.py)."""
        from ..routes import qk

        layer, query, key = self.check_layer(layer), self.position(query), self.position(key)
        if not isinstance(head, int) or not 0 <= head < self.adapter.n_heads:
            raise InvalidArgumentError(f"head {head!r} is out of range: the model has heads 0..{self.adapter.n_heads - 1}")
        if key > query:
            raise InvalidArgumentError(f"key {key} comes after query {query}: attention only reads earlier positions; "
                                       "use a key at or before the query")
        if qk.masked(self.capture.layers[layer].attention, query, key):
            # a key at or before the query that the mask removes is outside a sliding window
            window = getattr(self.adapter.spec(layer).attn, "sliding_window", None) or getattr(
                self.adapter.config, "sliding_window", None)
            why = f" of {window} positions" if isinstance(window, int) else ""
            why = f": it lies outside the layer's sliding window{why}"
            raise InvalidArgumentError(f"layer {layer} masks key {key} for query {query}{why}, so no head attends "
                                       "there; pick a key the query can see")
        return qk.attribute(self, layer, head, query, key)

    # ---- exactness --------------------------------------------------------------------------------
    def check(self) -> CheckReport:
        """Rebuild every write and residual from its parts and compare with the model's own numbers."""
        rows = check_capture(self.adapter, self.capture)
        lens = vocab.logit_lens(self.adapter, self.resid(self.n_layers)[-1])
        own = self.capture.last_logits.float().to(lens.device)
        lens_err = float((lens - own).abs().max() / own.abs().max().clamp_min(1e-30))
        dtype = next(self.adapter.model.parameters()).dtype
        return CheckReport(rows=rows, logit_lens_error=lens_err, tolerance=TOLERANCE.get(dtype, 1e-5), dtype=str(dtype))

    # ---- checking a route by knockout (routes/verify.py, docs/verify.md) ----------------------
    def verify(self, target: int = -1, threshold: float = 0.04, *, token: int | str | None = None,
               foil: int | str | None = None, renormalise: bool = False, trials: int = 5, seed: int = 0) -> Any:
        """The route from `target` at `threshold` checked by knockout: a routes.verify.VerifyReport of
        the target token's probability with only the route's attention edges, against random
        knockouts of the same attention weight. With `foil`, the contrastive route is checked and
        every measure adds the logit difference ("diff")."""
        from ..routes.verify import verify_route

        graph = self.graph(target=target, threshold=threshold, token=token, foil=foil)
        return verify_route(self, graph, token=token, renormalise=renormalise, trials=trials, seed=seed)

    def verify_curve(self, target: int = -1, thresholds: tuple[float, ...] = CURVE_THRESHOLDS,
                     **kw: Any) -> list[Any]:
        """`verify` at each threshold (keywords as verify's): one VerifyReport per threshold."""
        from ..routes.verify import verify_curve

        return verify_curve(self, target, thresholds, **kw)
