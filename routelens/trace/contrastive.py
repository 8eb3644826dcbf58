"""The contrastive side of a Trace: "why `token` rather than `foil`" (routes-math.md section 8).

A mixin of `Trace` (trace/trace.py) so that the class users hold keeps one surface while this part
lives in its own file. The math is routes/contrast.py; this caches it per (position, token, foil)
and shapes it as the rows route building reads.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ..routes import contrast
from .decompose import attention_parts, attn_scale, head_writes_at, neuron_parts
from .rows import AttentionRow, FfnRow

if TYPE_CHECKING:
    from .trace import Trace


class ContrastMixin:
    """Contrast directions, the target chain's contrastive rows and direct logit attribution."""

    def token_id(self: Trace, token: int | str, *, pos: int = -1, role: str = "token") -> int:
        """A vocabulary id from an id or a token's text (" Paris"). Text is matched against the
        model's predictions at `pos` first (what the predictions list shows), then tokenised; text
        that is not exactly one token raises InvalidArgumentError naming what it became."""
        vocab_size = self.adapter.vocab_size
        if not isinstance(token, (bool, str)) and hasattr(token, "__index__"):
            token = operator.index(token)  # a NumPy or torch integer is an id too
        if isinstance(token, bool) or not isinstance(token, (int, str)):
            raise InvalidArgumentError(f"the {role} must be a token id or a token's text, not {token!r}")
        if isinstance(token, int):
            if not 0 <= token < vocab_size:
                raise InvalidArgumentError(f"{role} id {token} is out of range: the vocabulary has ids 0..{vocab_size - 1}")
            return token
        for entry in self.predictions(k=50)[self.position(pos)]:
            if entry["token"] == token:
                return int(entry["id"])
        try:
            ids = self.model.tokenizer(token, add_special_tokens=False)["input_ids"]
        except TypeError:
            ids = self.model.tokenizer(token)["input_ids"]
        if len(ids) != 1:
            shown = " + ".join(repr(t) for t in self.model.token_strings(list(ids))) or "no tokens"
            raise InvalidArgumentError(
                f"the {role} {token!r} is {len(ids)} tokens ({shown}), not one; pick a single token, "
                "for example one of the predictions at that position, or give its id")
        return int(ids[0])

    def contrast(self: Trace, pos: int = -1, token: int | str | None = None,
                 foil: int | str | None = None) -> contrast.Direction:
        """The contrast direction at `pos` for `token` (default: the model's top prediction there)
        against `foil` (None: the token's logit alone). foil == token raises InvalidArgumentError."""
        pos = self.position(pos)
        token_id = self.token_id(token, pos=pos) if token is not None else int(self.predictions(k=1)[pos][0]["id"])
        foil_id = self.token_id(foil, pos=pos, role="foil") if foil is not None else None
        if foil_id == token_id:
            name = self.model.token_strings([token_id])[0]
            raise InvalidArgumentError(
                f"the foil is the target token itself ({name!r}): a contrast needs two different tokens; "
                "pick another foil, for example the second prediction")
        cache = self.__dict__.setdefault("_directions", {})
        key = (pos, token_id, foil_id)
        if key not in cache:
            cache[key] = contrast.direction(self.adapter, self.resid(self.n_layers)[pos], pos, token_id, foil_id)
        return cache[key]

    def contrast_rows(self: Trace, direction: contrast.Direction, layer: int) -> tuple[AttentionRow, FfnRow | None, dict]:
        """Contrastive rows of the target chain's nodes at `layer` (cached): the node after
        attention, the FFN-output node (None for a parallel block) and the signed attributions
        {"attn": {...}, "ffn": {...}} of their parts (`w . z`, logit-difference units)."""
        cache = self.__dict__.setdefault("_contrast_rows", {})
        key = (direction.key(), layer)
        if key in cache:
            return cache[key]
        pos, cap = direction.pos, self.capture.layers[layer]
        parts = attention_parts(self.adapter, cap, layer)
        parallel = self.is_parallel(layer)
        node = self.resid(layer + 1) if parallel else self.mid(layer)
        imp, dla = contrast.attention_node(parts, pos, cap.resid_in, node, direction.w,
                                           cap.ffn_write if parallel else None)
        arow = AttentionRow(resid=float(imp.resid[0]), heads=imp.heads[0].cpu().contiguous(), bias=float(imp.bias[0]),
                            ffn=float(imp.ffn[0]) if imp.ffn is not None else None, degenerate=bool(imp.degenerate[0]))
        frow, fdla = None, None
        if not parallel:
            fimp, fdla = contrast.ffn_node(pos, self.mid(layer), cap.ffn_write, self.resid(layer + 1), direction.w)
            frow = FfnRow(resid=float(fimp.resid[0]), ffn=float(fimp.ffn[0]), degenerate=bool(fimp.degenerate[0]))
        cache[key] = (arow, frow, {"attn": dla, "ffn": fdla})
        return cache[key]

    def logit_attribution(self: Trace, pos: int = -1, token: int | str | None = None,
                          foil: int | str | None = None) -> dict[str, Any]:
        """Direct logit attribution at `pos`: `w . z` (signed, logit-difference units) of every
        head, attention bias and FFN write of every layer, and of the embedding. They sum, with
        `constant`, to the model's (pre soft-cap) logit difference `logit_diff` (section 8)."""
        d = self.contrast(pos, token, foil)
        w, pos = d.w, d.pos
        layers = []
        for layer in range(self.n_layers):
            cap = self.capture.layers[layer]
            heads = head_writes_at(self.adapter, cap, layer, pos).float().cpu() @ w
            _, b_o = self.adapter.out_proj(layer)  # the bias alone: no [H, T, d] head writes for one position
            bias = 0.0
            if b_o is not None:
                scale = attn_scale(self.adapter, cap, layer, slice(pos, pos + 1))
                b = b_o.detach().float().cpu() * (scale[0].float().cpu() if scale is not None else 1.0)
                bias = float(b @ w)
            layers.append({"layer": layer, "heads": heads.tolist(), "attn_bias": bias,
                           "ffn": float(cap.ffn_write[pos].float().cpu() @ w)})
        embed = float(self.resid(0)[pos].float().cpu() @ w)
        total = embed + sum(sum(e["heads"]) + e["attn_bias"] + e["ffn"] for e in layers) + d.constant
        names = self.model.token_strings([d.token_id] + ([d.foil_id] if d.foil_id is not None else []))
        return {"pos": pos, "token": names[0], "token_id": d.token_id,
                "foil": names[1] if d.foil_id is not None else None, "foil_id": d.foil_id,
                "embed": embed, "constant": d.constant, "layers": layers, "total": total,
                "logit_diff": d.logit_diff}

    def neuron_attribution(self: Trace, layer: int, pos: int = -1, token: int | str | None = None,
                           foil: int | str | None = None, k: int = 20) -> list[dict]:
        """The neurons of `layer` at `pos` with the largest |direct logit attribution|
        (`act_k * w . W_out[:, k]`, post-norm scale applied), signed, with their activations and,
        on the contrast's chain, their contrastive importance in the FFN-output node."""
        d = self.contrast(pos, token, foil)
        layer, k = self.check_layer(layer), self.check_k(k)
        cap = self.capture.layers[layer]
        parts = neuron_parts(self.adapter, cap, layer, d.pos)
        w = d.w.to(parts.columns.device)
        cols = parts.columns.float()
        if parts.scale is not None:
            cols = cols * parts.scale[:, None]
        dla = (w @ cols) * parts.coef.float()  # [N]
        node = self.resid(layer + 1)[d.pos].float()
        rest = node - cap.ffn_write[d.pos].float()
        bias = None
        if parts.bias is not None:
            bias = parts.bias * parts.scale if parts.scale is not None else parts.bias
        shares = contrast.neuron_shares(w @ node.to(w.device), dla, w @ rest.to(w.device),
                                        (w @ bias.float().to(w.device)) if bias is not None else None)
        order = dla.abs().argsort(descending=True)[:k].tolist()
        return [{"neuron": parts.labels[n], "index": n, "dla": float(dla[n]), "importance": float(shares[n]),
                 "activation": float(parts.coef[n])} for n in order]

