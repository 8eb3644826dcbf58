"""A naive, independent reference for routes-math.md sections 2 and 3.

Nothing here calls routelens. It reads the Hugging Face model's weights, runs the model once with
its own forward hooks (block input/output, the norms that feed attention and FFN, the attention and
FFN outputs) and `output_attentions=True` for the pattern `A`, and then, in float64 and with plain
Python loops over layer / position / head / source, forms every part of every node:

    attention node:   x[l,i] ;  A[h,i,j] * s_i * W_O[h] (W_V[kv(h)] n[l,j] + b_V[kv(h)])  ;  s_i * b_O
                      (+ the FFN write f[l,i] for parallel blocks, whose node is x[l+1,i])
    FFN node:         m[l,i] = x[l,i] + a[l,i] ;  f[l,i]
    neurons:          coef_k * s_i * W_out[:, k]  (coef = act, or g_e * act_e for routed experts)

and their proximity importances `prox_k = max(||y||_p - ||y - z_k||_p, 0)`, `c_k = prox_k / sum prox`.
`y` is always the model's own residual value (captured by the hooks). The per-family slicing of
`W_V`, `W_O`, the FFN formulas and the MoE routing are re-derived here from the weights.

Families added since (anything not in HAND_DERIVED) are read generically, from numbers the model
computes itself: the value vectors and the pattern are what the model's own eager attention function
was called with and returned (a recording attention implementation), W_O / b_O are the weights of the
module the family's declaration names as its output projection, neuron activations are the input of
its FFN output projection. Only module paths come from the declaration (data, not routelens code),
so a wrong value layout, output projection or multiplier in an adapter still shows as a mismatch.

One file on purpose (over 400 lines): the reference is read as one independent derivation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DT = torch.float64

LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mixtral", "qwen2_moe", "qwen3_moe"}
MOE = {"mixtral", "qwen2_moe", "qwen3_moe"}
HAND_DERIVED = LLAMA_LIKE | {"gpt2", "opt", "gpt_neox", "phi", "gptj"}


def _d(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(DT).cpu()


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _row(t: torch.Tensor) -> torch.Tensor:
    """[1, T, d] or [T, d] -> [T, d] float64."""
    t = _d(t)
    return t[0] if t.dim() == 3 else t


# ------------------------------------------------------------------------------------------
# Family facts, re-derived from the transformers sources
# ------------------------------------------------------------------------------------------
@dataclass
class LayerNames:
    block: nn.Module
    attn: nn.Module
    attn_norm: nn.Module  # its output is what attention reads
    attn_post: nn.Module | None  # Gemma 2/3 post-attention norm
    ffn_norm: nn.Module  # its output is what the FFN reads
    ffn_post: nn.Module | None
    ffn_write_module: nn.Module  # its output is the FFN write before any post-norm


def model_type(model) -> str:
    return model.config.model_type


def is_parallel(model) -> bool:
    mt = model_type(model)
    if mt == "gpt_neox":
        return bool(model.config.use_parallel_residual)
    return mt in ("phi", "gptj")


def decoder_layers(model) -> list[nn.Module]:
    mt = model_type(model)
    if mt in LLAMA_LIKE or mt == "phi":
        return list(model.model.layers)
    if mt in ("gpt2", "gptj"):
        return list(model.transformer.h)
    if mt == "opt":
        return list(model.model.decoder.layers)
    if mt == "gpt_neox":
        return list(model.gpt_neox.layers)
    raise KeyError(mt)


def layer_names(model, layer: nn.Module) -> LayerNames:
    mt = model_type(model)
    if mt in ("gemma2", "gemma3_text"):
        return LayerNames(layer, layer.self_attn, layer.input_layernorm, layer.post_attention_layernorm,
                          layer.pre_feedforward_layernorm, layer.post_feedforward_layernorm, layer.mlp)
    if mt in LLAMA_LIKE:
        return LayerNames(layer, layer.self_attn, layer.input_layernorm, None, layer.post_attention_layernorm, None, layer.mlp)
    if mt == "gpt2":
        return LayerNames(layer, layer.attn, layer.ln_1, None, layer.ln_2, None, layer.mlp)
    if mt == "opt":
        return LayerNames(layer, layer.self_attn, layer.self_attn_layer_norm, None, layer.final_layer_norm, None, layer.fc2)
    if mt == "gpt_neox":
        return LayerNames(layer, layer.attention, layer.input_layernorm, None, layer.post_attention_layernorm, None, layer.mlp)
    if mt == "phi":
        return LayerNames(layer, layer.self_attn, layer.input_layernorm, None, layer.input_layernorm, None, layer.mlp)
    if mt == "gptj":
        return LayerNames(layer, layer.attn, layer.ln_1, None, layer.ln_1, None, layer.mlp)
    raise KeyError(mt)


def shapes(model) -> tuple[int, int, int, int]:
    """(n_heads, n_kv_heads, head_dim, d_model)."""
    c = model.config
    mt = model_type(model)
    if mt in ("gpt2", "gptj"):
        d, h = c.n_embd, c.n_head
        return h, h, d // h, d
    d, h = c.hidden_size, c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or h
    if mt in ("opt", "gpt_neox"):
        kv = h
    hd = getattr(c, "head_dim", None) or d // h
    return h, kv, hd, d


def value_and_out(model, layer: nn.Module) -> tuple[list, list, list, torch.Tensor | None]:
    """Per kv head (W_V [dh, d], b_V [dh] or None), per query head W_O [d, dh], and b_O."""
    mt = model_type(model)
    H, KV, dh, d = shapes(model)
    wv, bv, wo = [], [], []
    if mt in LLAMA_LIKE or mt in ("opt", "phi", "gptj"):
        attn = layer.self_attn if mt != "gptj" else layer.attn
        v = attn.v_proj
        o = {"phi": getattr(attn, "dense", None), "opt": getattr(attn, "out_proj", None),
             "gptj": getattr(attn, "out_proj", None)}.get(mt) or getattr(attn, "o_proj", None)
        for k in range(KV):
            wv.append(_d(v.weight[k * dh:(k + 1) * dh]))
            bv.append(_d(v.bias[k * dh:(k + 1) * dh]) if v.bias is not None else None)
        for h in range(H):
            wo.append(_d(o.weight[:, h * dh:(h + 1) * dh]))
        bo = _d(o.bias) if o.bias is not None else None
    elif mt == "gpt2":
        c_attn, c_proj = layer.attn.c_attn, layer.attn.c_proj  # Conv1D: y = x @ W + b, W [in, out]
        for k in range(KV):
            cols = slice(2 * d + k * dh, 2 * d + (k + 1) * dh)
            wv.append(_d(c_attn.weight[:, cols]).t())
            bv.append(_d(c_attn.bias[cols]))
        for h in range(H):
            wo.append(_d(c_proj.weight[h * dh:(h + 1) * dh, :]).t())
        bo = _d(c_proj.bias)
    elif mt == "gpt_neox":
        qkv, dense = layer.attention.query_key_value, layer.attention.dense
        for k in range(KV):  # per head the rows are [q_h | k_h | v_h]
            rows = slice(k * 3 * dh + 2 * dh, k * 3 * dh + 3 * dh)
            wv.append(_d(qkv.weight[rows]))
            bv.append(_d(qkv.bias[rows]) if qkv.bias is not None else None)
        for h in range(H):
            wo.append(_d(dense.weight[:, h * dh:(h + 1) * dh]))
        bo = _d(dense.bias) if dense.bias is not None else None
    else:
        raise KeyError(mt)
    return wv, bv, wo, bo


def rms_gain(model, norm: nn.Module) -> torch.Tensor:
    w = _d(norm.weight)
    return w + 1.0 if model_type(model).startswith("gemma") else w


def norm_eps(norm: nn.Module) -> float:
    for name in ("eps", "variance_epsilon"):
        if hasattr(norm, name):
            return float(getattr(norm, name))
    raise AttributeError(type(norm).__name__)


def post_scale(model, norm: nn.Module | None, o: torch.Tensor) -> torch.Tensor | None:
    """s with norm(o) = s * o for an RMSNorm after a write, per position: [T, d]."""
    if norm is None:
        return None
    g = rms_gain(model, norm)
    out = torch.empty_like(o)
    for i in range(o.shape[0]):
        ms = sum(v * v for v in o[i].tolist()) / o.shape[1]
        out[i] = g / math.sqrt(ms + norm_eps(norm))
    return out


# ------------------------------------------------------------------------------------------
# FFN neurons, re-derived per family (activation functions are the model's own modules)
# ------------------------------------------------------------------------------------------
def _lin(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b = _d(module.bias) if getattr(module, "bias", None) is not None else None
    return F.linear(x, _d(module.weight), b)


def _conv1d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x @ _d(module.weight) + _d(module.bias)


def ffn_neurons(model, layer: nn.Module, n: torch.Tensor) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """For one position's FFN input n [d]: labels, coefficients [N], columns [d, N] and the bias."""
    mt = model_type(model)
    if mt == "gpt2":
        mlp = layer.mlp
        act = mlp.act(_conv1d(mlp.c_fc, n))
        return [str(k) for k in range(act.shape[0])], act, _d(mlp.c_proj.weight).t(), _d(mlp.c_proj.bias)
    if mt == "opt":
        act = layer.activation_fn(_lin(layer.fc1, n))
        return [str(k) for k in range(act.shape[0])], act, _d(layer.fc2.weight), _d(layer.fc2.bias)
    if mt == "gpt_neox":
        mlp = layer.mlp
        act = mlp.act(_lin(mlp.dense_h_to_4h, n))
        return [str(k) for k in range(act.shape[0])], act, _d(mlp.dense_4h_to_h.weight), _d(mlp.dense_4h_to_h.bias)
    if mt == "phi":
        mlp = layer.mlp
        act = mlp.activation_fn(_lin(mlp.fc1, n))
        return [str(k) for k in range(act.shape[0])], act, _d(mlp.fc2.weight), _d(mlp.fc2.bias)
    if mt == "gptj":
        mlp = layer.mlp
        act = mlp.act(_lin(mlp.fc_in, n))
        return [str(k) for k in range(act.shape[0])], act, _d(mlp.fc_out.weight), _d(mlp.fc_out.bias)
    mlp = layer.mlp
    if mt in MOE and hasattr(mlp, "experts"):
        return _moe_neurons(model, mlp, n)
    # gated MLP: down(act(gate n) * up n)
    act = mlp.act_fn(_lin(mlp.gate_proj, n)) * _lin(mlp.up_proj, n)
    b = _d(mlp.down_proj.bias) if mlp.down_proj.bias is not None else None
    return [str(k) for k in range(act.shape[0])], act, _d(mlp.down_proj.weight), b


def _moe_neurons(model, mlp: nn.Module, n: torch.Tensor):
    mt = model_type(model)
    cfg = model.config
    experts = mlp.experts
    logits = F.linear(n, _d(mlp.gate.weight))
    probs = torch.softmax(logits, dim=-1)
    k = cfg.num_experts_per_tok
    order = sorted(range(probs.shape[0]), key=lambda e: -float(probs[e]))[:k]
    weights = [float(probs[e]) for e in order]
    if mt == "mixtral" or getattr(cfg, "norm_topk_prob", False):
        total = sum(weights)
        weights = [w / total for w in weights]
    labels, coefs, cols = [], [], []
    for e, g in zip(order, weights):
        gu = F.linear(n, _d(experts.gate_up_proj[e]))
        half = gu.shape[0] // 2
        act = experts.act_fn(gu[:half]) * gu[half:]
        labels += [f"e{e}:{j}" for j in range(half)]
        coefs.append(g * act)
        cols.append(_d(experts.down_proj[e]))
    shared = getattr(mlp, "shared_expert", None)
    if shared is not None:
        act = shared.act_fn(_lin(shared.gate_proj, n)) * _lin(shared.up_proj, n)
        gate = torch.sigmoid(_lin(mlp.shared_expert_gate, n))[0]
        labels += [f"shared:{j}" for j in range(act.shape[0])]
        coefs.append(gate * act)
        cols.append(_d(shared.down_proj.weight))
    return labels, torch.cat(coefs), torch.cat(cols, dim=1), None


# ------------------------------------------------------------------------------------------
# Capture with our own hooks
# ------------------------------------------------------------------------------------------
@dataclass
class RefLayer:
    x_in: torch.Tensor  # [T, d]
    n_attn: torch.Tensor  # [T, d]
    pattern: torch.Tensor  # [H, T, T]
    o: torch.Tensor  # attention output before post-norm
    a: torch.Tensor  # attention write (after post-norm)
    n_ffn: torch.Tensor
    f_raw: torch.Tensor  # FFN output before post-norm
    f: torch.Tensor  # FFN write
    x_out: torch.Tensor


class Reference:
    def __init__(self, model: nn.Module, ids: list[int]) -> None:
        self.model = model
        self.ids = list(ids)
        self.parallel = is_parallel(model)
        self.H, self.KV, self.dh, self.d = shapes(model)
        self.layers_mod = decoder_layers(model)
        self.names = [layer_names(model, layer) for layer in self.layers_mod]
        self.layers = self._run()
        self._u_cache: dict[int, list[list[torch.Tensor]]] = {}

    def _run(self) -> list[RefLayer]:
        store: list[dict] = [{} for _ in self.layers_mod]
        handles = []

        def out_hook(i, key, first=True):
            def hook(_m, _a, out):
                # Phi / GPT-J use one norm for attention and FFN: keep the first call only.
                if key in store[i] and first:
                    return
                store[i][key] = _row(_first(out))
            return hook

        def in_hook(i, key):
            def hook(_m, args, kwargs):
                store[i][key] = _row(args[0] if args else kwargs["hidden_states"])
            return hook

        for i, nm in enumerate(self.names):
            handles.append(nm.block.register_forward_pre_hook(in_hook(i, "x_in"), with_kwargs=True))
            handles.append(nm.block.register_forward_hook(out_hook(i, "x_out")))
            handles.append(nm.attn_norm.register_forward_hook(out_hook(i, "n_attn")))
            if nm.ffn_norm is not nm.attn_norm:
                handles.append(nm.ffn_norm.register_forward_hook(out_hook(i, "n_ffn")))
            handles.append(nm.attn.register_forward_hook(out_hook(i, "o")))
            if nm.attn_post is not None:
                handles.append(nm.attn_post.register_forward_hook(out_hook(i, "a")))
            handles.append(nm.ffn_write_module.register_forward_hook(out_hook(i, "f_raw")))
            if nm.ffn_post is not None:
                handles.append(nm.ffn_post.register_forward_hook(out_hook(i, "f")))
        # transformers' own eager attention, whatever the model runs with (routelens installs its own)
        before = self.model.config._attn_implementation
        try:
            self.model.set_attn_implementation("eager")
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([self.ids]), output_attentions=True, use_cache=False)
        finally:
            self.model.set_attn_implementation(before)
            for h in handles:
                h.remove()
        self.logits = _d(out.logits[0])
        layers = []
        for i, s in enumerate(store):
            layers.append(
                RefLayer(
                    x_in=s["x_in"],
                    n_attn=s["n_attn"],
                    pattern=_d(out.attentions[i][0]),
                    o=s["o"],
                    a=s.get("a", s["o"]),
                    n_ffn=s.get("n_ffn", s["n_attn"]),
                    f_raw=s["f_raw"],
                    f=s.get("f", s["f_raw"]),
                    x_out=s["x_out"],
                )
            )
        return layers

    # ---- parts ---------------------------------------------------------------------------
    def kv_of(self, h: int) -> int:
        return h // (self.H // self.KV)

    def head_writes(self, l: int) -> list[list[torch.Tensor]]:
        """U[h][j] = W_O[h] (W_V[kv(h)] n[l, j] + b_V[kv(h)]), one matrix-vector product at a time."""
        if l in self._u_cache:
            return self._u_cache[l]
        wv, bv, wo, _ = value_and_out(self.model, self.layers_mod[l])
        n = self.layers[l].n_attn
        U = []
        for h in range(self.H):
            k = self.kv_of(h)
            row = []
            for j in range(n.shape[0]):
                v = wv[k] @ n[j]
                if bv[k] is not None:
                    v = v + bv[k]
                row.append(wo[h] @ v)
            U.append(row)
        self._u_cache[l] = U
        return U

    def attn_scale(self, l: int) -> torch.Tensor | None:
        return post_scale(self.model, self.names[l].attn_post, self.layers[l].o)

    def ffn_scale(self, l: int) -> torch.Tensor | None:
        return post_scale(self.model, self.names[l].ffn_post, self.layers[l].f_raw)

    def attention_parts(self, l: int, i: int) -> dict:
        """The parts of the attention write into position i: {(h, j): z}, and 'bias'."""
        U = self.head_writes(l)
        A = self.layers[l].pattern
        s = self.attn_scale(l)
        bo = self.out_bias(l)
        parts = {}
        for h in range(self.H):
            for j in range(i + 1):
                z = A[h, i, j] * U[h][j]
                parts[(h, j)] = z * s[i] if s is not None else z
        if bo is not None:
            parts["bias"] = bo * s[i] if s is not None else bo.clone()
        return parts

    def out_bias(self, l: int) -> torch.Tensor | None:
        return value_and_out(self.model, self.layers_mod[l])[3]

    def attention_write(self, l: int, i: int) -> torch.Tensor:
        total = torch.zeros(self.d, dtype=DT)
        for z in self.attention_parts(l, i).values():
            total = total + z
        return total

    def neuron_parts(self, l: int, i: int):
        """labels, coefficient [N], per-neuron writes [N, d] (post-norm scale applied), bias write."""
        labels, coef, cols, bias = ffn_neurons(self.model, self.layers_mod[l], self.layers[l].n_ffn[i])
        s = self.ffn_scale(l)
        writes = []
        for k in range(coef.shape[0]):
            w = coef[k] * cols[:, k]
            writes.append(w * s[i] if s is not None else w)
        if bias is not None and s is not None:
            bias = bias * s[i]
        return labels, coef, torch.stack(writes), bias

    # ---- nodes and importances -------------------------------------------------------------
    def attention_node(self, l: int, i: int) -> tuple[torch.Tensor, dict]:
        """(y, parts) of the node after attention: m[l,i], or x[l+1,i] for a parallel block."""
        L = self.layers[l]
        parts = {"resid": L.x_in[i].clone()}
        parts.update(self.attention_parts(l, i))
        if self.parallel:
            parts["ffn"] = L.f[i].clone()
            y = L.x_out[i].clone()
        else:
            y = L.x_in[i] + L.a[i]
        return y, parts

    def ffn_node(self, l: int, i: int) -> tuple[torch.Tensor, dict]:
        L = self.layers[l]
        return L.x_out[i].clone(), {"resid": L.x_in[i] + L.a[i], "ffn": L.f[i].clone()}

    def neuron_node(self, l: int, i: int):
        """(y, parts): the residual (y minus the FFN write), one part per neuron, and the bias."""
        L = self.layers[l]
        labels, _coef, writes, bias = self.neuron_parts(l, i)
        y = L.x_out[i].clone()
        parts = {"resid": y - L.f[i]}
        for k, lab in enumerate(labels):
            parts[lab] = writes[k]
        if bias is not None:
            parts["bias"] = bias
        return y, parts


def norm_p(v: torch.Tensor, p: int) -> float:
    values = v.tolist()
    if p == 1:
        return sum(abs(x) for x in values)
    return math.sqrt(sum(x * x for x in values))


def importances(y: torch.Tensor, parts: dict, p: int) -> dict:
    """c_k = max(||y|| - ||y - z_k||, 0) / sum, for every part (loops, float64)."""
    ny = norm_p(y, p)
    prox = {k: max(ny - norm_p(y - z, p), 0.0) for k, z in parts.items()}
    total = sum(prox.values())
    if total <= 0:  # degenerate node (all parts cancel): routelens falls back to the parts' norms
        prox = {k: norm_p(z, p) for k, z in parts.items()}
        total = sum(prox.values())
    return {k: v / total for k, v in prox.items()}


def final_norm(model) -> nn.Module:
    mt = model_type(model)
    if mt in LLAMA_LIKE:
        return model.model.norm
    if mt in ("gpt2", "gptj"):
        return model.transformer.ln_f
    if mt == "opt":
        return model.model.decoder.final_layer_norm
    if mt == "gpt_neox":
        return model.gpt_neox.final_layer_norm
    if mt == "phi":
        return model.model.final_layernorm
    raise KeyError(mt)


def final_norm_without_bias(model, y: torch.Tensor) -> torch.Tensor:
    """The final norm of y [d] by formula, without its additive bias (the linear part in y's scale)."""
    family = declared_family(model)
    norm = final_norm(model) if family is None else resolve(model, family.final_norm)
    layer_norm = isinstance(norm, nn.LayerNorm) or (family is not None and family.norm == "layer")
    y = _d(y)
    d = y.shape[0]
    values = y.tolist()
    if family is None:
        gain = _d(norm.weight) if layer_norm else rms_gain(model, norm)
    else:
        gain = _d(norm.weight) + family.norm_offset if getattr(norm, "weight", None) is not None else None
    if layer_norm:
        mean = sum(values) / d
        var = sum((v - mean) ** 2 for v in values) / d
        out = (y - mean) / math.sqrt(var + norm_eps(norm))
    else:
        ms = sum(v * v for v in values) / d
        out = y / math.sqrt(ms + norm_eps(norm))
    return out * gain if gain is not None else out


# ------------------------------------------------------------------------------------------
# Families read generically (module docstring): numbers the model computes, paths declared
# ------------------------------------------------------------------------------------------
def declared_family(model):
    """The declaration of a family this file does not derive by hand (None for those it does)."""
    if model_type(model) in HAND_DERIVED:
        return None
    from routelens.models.adapters import family_for  # data only: module paths, norm kind, multiplier

    family = family_for(model_type(model))
    if family is None:
        raise KeyError(model_type(model))
    return family


def resolve(root, path: str | None):
    """Follow a dotted attribute path; None for a missing optional ("...?") one."""
    if path is None:
        return None
    obj = root
    for name in path.rstrip("?").split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            assert path.endswith("?"), f"{type(root).__name__} has no {path}"
            return None
    return obj


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """A projection's weight as [out, in] float64 (GPT-2's Conv1D keeps [in, out])."""
    w = _d(module.weight)
    return w.t() if type(module).__name__ == "Conv1D" else w


_RECORDED: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def recording_attention(module, query, key, value, attention_mask, **kwargs):
    """The family's own eager attention, keeping the values it was given and the weights it made."""
    import sys

    eager = getattr(module, "routelens_eager", None) or sys.modules[type(module).__module__].eager_attention_forward
    out, weights = eager(module, query, key, value, attention_mask, **kwargs)
    _RECORDED[id(module)] = (_d(value[0]), _d(weights[0]))
    return out, weights


class DeclaredReference(Reference):
    """The same parts and importances as Reference, for a family read generically."""

    def __init__(self, model: nn.Module, ids: list[int], family=None) -> None:
        self.family = family if family is not None else declared_family(model)
        self.model = model
        self.ids = list(ids)
        cfg = model.config
        parallel = self.family.parallel
        self.parallel = bool(getattr(cfg, parallel)) if isinstance(parallel, str) else bool(parallel)
        self.layers_mod = list(resolve(model, self.family.layers))
        scale = getattr(cfg, self.family.write_scale) if self.family.write_scale else None
        self.multiplier = None if scale in (None, 1.0) else float(scale)
        self.layers = self._run()
        self.H = self.layers[0].pattern.shape[0]
        self.KV, _, self.dh = self.values[0].shape
        self.d = self.layers[0].x_in.shape[1]
        self._u_cache = {}

    def _module(self, l: int, path: str | None):
        return resolve(self.layers_mod[l], path)

    def _run(self) -> list[RefLayer]:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask

        f = self.family
        store: list[dict] = [{} for _ in self.layers_mod]
        handles = []

        def keep_out(i, key):
            def hook(_m, _a, out):
                store[i].setdefault(key, _row(_first(out)))
            return hook

        def keep_in(i, key):
            def hook(_m, args, kwargs):
                store[i].setdefault(key, _row(args[0] if args else kwargs["hidden_states"]))
            return hook

        for i, block in enumerate(self.layers_mod):
            handles.append(block.register_forward_pre_hook(keep_in(i, "x_in"), with_kwargs=True))
            handles.append(block.register_forward_hook(keep_out(i, "x_out")))
            handles.append(self._module(i, f.attn).register_forward_pre_hook(keep_in(i, "n_attn"), with_kwargs=True))
            handles.append(self._module(i, f.attn).register_forward_hook(keep_out(i, "o")))
            handles.append(self._module(i, f.ffn).register_forward_pre_hook(keep_in(i, "n_ffn"), with_kwargs=True))
            ffn_out = self._module(i, f.ffn_out)
            if ffn_out is not None:
                handles.append(ffn_out.register_forward_pre_hook(keep_in(i, "act"), with_kwargs=True))
                handles.append(ffn_out.register_forward_hook(keep_out(i, "f_raw")))
            else:
                handles.append(self._module(i, f.ffn).register_forward_hook(keep_out(i, "f_raw")))
            for path, key in ((f.attn_post_norm, "a"), (f.ffn_post_norm, "f")):
                norm = self._module(i, path)
                if norm is not None:
                    handles.append(norm.register_forward_hook(keep_out(i, key)))
        AttentionInterface.register("reference_recording", recording_attention)
        AttentionMaskInterface.register("reference_recording", eager_mask)  # the masks eager attention gets
        before = self.model.config._attn_implementation
        _RECORDED.clear()
        try:
            self.model.set_attn_implementation("reference_recording")
            with torch.no_grad():
                out = self.model(input_ids=torch.tensor([self.ids]), use_cache=False)
        finally:
            self.model.set_attn_implementation(before)
            for h in handles:
                h.remove()
        self.logits = _d(out.logits[0])
        layers, self.values, self.acts = [], [], []
        m = self.multiplier
        for i, s in enumerate(store):
            value, pattern = _RECORDED[id(self._module(i, f.attn))]
            self.values.append(value)  # [Hkv, T, dh]
            self.acts.append(s.get("act"))
            o, f_raw = s["o"], s["f_raw"]
            layers.append(RefLayer(
                x_in=s["x_in"], n_attn=s["n_attn"], pattern=pattern, o=o,
                a=s.get("a", o * m if m is not None else o), n_ffn=s["n_ffn"], f_raw=f_raw,
                f=s.get("f", f_raw * m if m is not None else f_raw), x_out=s["x_out"],
            ))
        return layers

    def head_writes(self, l: int) -> list[list[torch.Tensor]]:
        """U[h][j] = W_O[h] v[kv(h), j], v the value the model's attention function was given."""
        if l in self._u_cache:
            return self._u_cache[l]
        w_o = weight_out_in(self._module(l, self.family.out_proj))
        v = self.values[l]
        U = []
        for h in range(self.H):
            wo = w_o[:, h * self.dh:(h + 1) * self.dh]
            U.append([wo @ v[self.kv_of(h), j] for j in range(v.shape[1])])
        self._u_cache[l] = U
        return U

    def out_bias(self, l: int) -> torch.Tensor | None:
        bias = getattr(self._module(l, self.family.out_proj), "bias", None)
        return _d(bias) if bias is not None else None

    def _scale(self, norm, o: torch.Tensor) -> torch.Tensor | None:
        if norm is not None:
            g = _d(norm.weight) + self.family.norm_offset
            out = torch.empty_like(o)
            for i in range(o.shape[0]):
                ms = sum(v * v for v in o[i].tolist()) / o.shape[1]
                out[i] = g / math.sqrt(ms + norm_eps(norm))
            return out
        if self.multiplier is not None:
            return torch.full_like(o, self.multiplier)
        return None

    def attn_scale(self, l: int) -> torch.Tensor | None:
        return self._scale(self._module(l, self.family.attn_post_norm), self.layers[l].o)

    def ffn_scale(self, l: int) -> torch.Tensor | None:
        return self._scale(self._module(l, self.family.ffn_post_norm), self.layers[l].f_raw)

    def neuron_parts(self, l: int, i: int):
        out = self._module(l, self.family.ffn_out)
        coef = self.acts[l][i]
        cols = weight_out_in(out)
        bias = _d(out.bias) if getattr(out, "bias", None) is not None else None
        s = self.ffn_scale(l)
        writes = [coef[k] * cols[:, k] * (s[i] if s is not None else 1.0) for k in range(coef.shape[0])]
        if bias is not None and s is not None:
            bias = bias * s[i]
        return [str(k) for k in range(coef.shape[0])], coef, torch.stack(writes), bias


def reference_for(model: nn.Module, ids: list[int], family=None) -> Reference:
    """The hand-derived reference where this file has one, the generic one otherwise (reading the
    module paths of `family`, or of the family routelens would pick)."""
    if model_type(model) in HAND_DERIVED:
        return Reference(model, ids)
    return DeclaredReference(model, ids, family)
