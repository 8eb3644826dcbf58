"""A loaded model ready to trace: the transformers model, its tokenizer and its adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import EmptyPromptError, InvalidArgumentError, PromptTooLongError
from .adapters import adapter_for
from .adapters.base import Adapter
from .tokens import TokenBytes, sequence_labels, token_label


@dataclass
class ModelSource:
    """Where the weights came from: what a cache key of a trace needs to know."""

    name: str
    kind: str  # catalog | hub | local | gguf | memory
    revision: str | None = None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def choose_adapter(model: nn.Module) -> Adapter:
    """The adapter of a transformers causal LM (adapters.adapter_for), or of a TransformerLens
    TransformerBridge (adapters/transformer_lens.py); a TransformerLens 3 HookedTransformer is
    refused with what to use instead. Raises UnsupportedArchitectureError."""
    from .adapters import transformer_lens as tl

    if tl.is_bridge(model):
        return tl.TransformerLensAdapter(model)
    if tl.is_hooked_transformer(model):
        from ..errors import UnsupportedArchitectureError

        raise UnsupportedArchitectureError(
            "routelens traces TransformerLens 4 bridges, not TransformerLens 3's HookedTransformer: boot the model "
            "with TransformerBridge.boot_transformers(name) and call bridge.enable_compatibility_mode() for "
            "HookedTransformer's numerics (fold_ln, center_writing_weights, ...), then rl.wrap(bridge)")
    return adapter_for(model)


PROBE_TOKENS = 8  # the exactness probe of a hook-read backend (Model._probe_exactness)


class Model:
    """Wraps a transformers causal LM, or a TransformerLens TransformerBridge, for tracing. Build it
    with `rl.load` or `rl.wrap`. `hf_model` is the model as given (the bridge itself for a bridge)."""

    def __init__(self, hf_model: nn.Module, tokenizer: Any, source: ModelSource) -> None:
        self.hf_model = hf_model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.adapter = choose_adapter(hf_model)  # refuses unknown architectures before anything runs
        # The model's own eager attention, a block of query rows at a time, recording what any
        # pattern row needs (trace/attention.py): no heads x T x T tensor is ever whole. A backend
        # computing attention itself (TransformerLens) hands its pattern over through hooks instead.
        from ..trace.attention import NAME, use_routelens_attention

        if self.adapter.uses_routelens_attention and getattr(hf_model.config, "_attn_implementation", None) != NAME:
            use_routelens_attention(hf_model)
        from ..store.identity import parameter_guard

        # the parameters as loaded: a stored trace is keyed by the weight files only while they match
        self.loaded_guard = parameter_guard(hf_model)
        if not self.adapter.uses_routelens_attention:
            self._probe_exactness()

    def _probe_exactness(self) -> None:
        """A backend read through its own hooks (TransformerLens) covers architectures no test here
        has seen: before any trace is trusted, a short probe must rebuild every write, residual and
        the logits from the parts (Trace.check). Raises UnsupportedArchitectureError when it does not."""
        from ..errors import UnsupportedArchitectureError
        from ..trace.capture import run_with_capture
        from ..trace.trace import Trace

        n = min(PROBE_TOKENS, self.adapter.context_length or PROBE_TOKENS)
        ids = (torch.arange(n) * 7 + 1) % self.adapter.vocab_size
        trace = Trace(self, run_with_capture(self.adapter, ids))
        for layer in range(trace.n_layers):  # routes read sources j <= i only: the attention must be causal
            if bool(torch.triu(trace.capture.layers[layer].pattern.float(), diagonal=1).ne(0).any()):
                raise UnsupportedArchitectureError(
                    f"{self.name}: layer {layer} attends to later positions (its attention is not causal); routes "
                    "need a decoder-only causal LM")
        report = trace.check()
        if not report.ok:
            raise UnsupportedArchitectureError(
                f"{self.name}: through {self.adapter.family}, the parts routelens reads do not rebuild what the model "
                f"computes (max relative error {report.max_error:.2e} on a {n}-token probe, tolerance "
                f"{report.tolerance:.0e}), so its routes would not be exact; this architecture needs a native adapter")

    @property
    def name(self) -> str:
        return self.source.name

    def __repr__(self) -> str:
        a = self.adapter
        return f"<routelens.Model {self.name!r}: {a.family}, {a.n_layers} layers, {a.n_heads} heads, d={a.d_model}>"

    def facts(self) -> dict[str, Any]:
        """What the model is: name, source, family, shapes, device, dtype; "backend" is
        "transformers" or "transformer-lens" (a TransformerBridge, with its "processing")."""
        return {"name": self.name, "source": self.source.kind, "revision": self.source.revision,
                "backend": "transformers", **self.adapter.facts()}

    def graph_facts(self) -> dict[str, Any]:
        a = self.adapter
        return {"name": self.name, "n_layers": a.n_layers, "n_heads": a.n_heads, "d_model": a.d_model, "vocab": a.vocab_size}

    # ---- tokens -----------------------------------------------------------------------------
    def token_bytes(self, ids: list[int]) -> list[bytes]:
        """Each token's bytes, read from the tokenizer's vocabulary (models/tokens.py)."""
        reader = self.__dict__.get("_token_bytes")
        if reader is None or reader.tokenizer is not self.tokenizer:
            reader = self.__dict__["_token_bytes"] = TokenBytes(self.tokenizer)
        return reader(ids)

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each token on its own as the text it adds (" Paris", not "ĠParis"); a token that is not
        whole UTF-8 as its bytes, "<E6 97>" (models/tokens.py `token_label`: one-to-one)."""
        return [token_label(b) for b in self.token_bytes(ids)]

    def token_labels(self, ids: list[int]) -> list[str]:
        """The tokens of one sequence (a prompt): each character shown by the token that completes
        it, the pieces before it as their bytes, "<E6 97>" (models/tokens.py `sequence_labels`)."""
        return sequence_labels(self.token_bytes(ids))

    def tokenize(self, prompt: str | list[int], *, chat: bool = False) -> torch.Tensor:
        if isinstance(prompt, str):
            if not prompt.strip():
                raise EmptyPromptError("the prompt is empty: give some text to trace")
            if chat:
                if not getattr(self.tokenizer, "chat_template", None):
                    raise InvalidArgumentError(f"{self.name} has no chat template; trace the prompt without chat")
                ids = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
                )
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
            else:
                ids = self.tokenizer(prompt)["input_ids"]
        else:
            ids = list(prompt)
            if not all(isinstance(i, int) and 0 <= i < self.adapter.vocab_size for i in ids):
                raise InvalidArgumentError(f"token ids must be integers in 0..{self.adapter.vocab_size - 1}")
        if len(ids) == 0:
            raise EmptyPromptError("the prompt has no tokens: give some text to trace")
        limit = self.adapter.context_length
        if limit is not None and len(ids) > limit:
            raise PromptTooLongError(
                f"the prompt has {len(ids)} tokens but {self.name} reads at most {limit}; shorten it"
            )
        return torch.tensor(ids, dtype=torch.long)

    # ---- tracing ------------------------------------------------------------------------------
    def generate(self, prompt: str | list[int], n: int = 10, *, sample: bool = False, seed: int | None = None,
                 temperature: float = 1.0, chat: bool = False, norm: int = 1, store: Any = None):
        """Generate up to `n` tokens after `prompt` (greedy, or sampled at `temperature` with `seed`)
        and trace prompt and continuation in one pass: a `Generation` (trace/generation.py) whose
        `graph(step)` is the route of each generated token. Stops early at end of sequence.
        Raises InvalidArgumentError for options out of range, PromptTooLongError past the context."""
        from ..trace.generation import Generation, check_options, generate_ids, steps_of

        check_options(n, sample, seed, temperature)
        ids = self.tokenize(prompt, chat=chat)
        limit = self.adapter.context_length
        if limit is not None and len(ids) + n > limit:
            raise PromptTooLongError(f"the prompt has {len(ids)} tokens and {self.name} reads at most {limit}: "
                                     f"generate at most {max(0, limit - len(ids))} tokens, or shorten the prompt")
        new = generate_ids(self, ids, n, sample=sample, seed=seed, temperature=float(temperature))
        if not new:
            raise InvalidArgumentError("the model generated no token (it ended the sequence at once); "
                                       "try another prompt, or sample")
        trace = self.trace(ids.tolist() + new, norm=norm, store=store)
        return Generation(trace=trace, prompt_length=len(ids), steps=steps_of(trace, len(ids), new),
                          sampled=sample, seed=seed, temperature=float(temperature))

    def estimate(self, prompt: str | list[int], *, chat: bool = False):
        """What tracing `prompt` would cost, before it runs: an `Estimate` (trace/estimate.py) of the
        peak and kept memory (bytes) and the forward and route times (seconds) on this machine."""
        from ..trace.estimate import estimate

        return estimate(self.adapter, len(self.tokenize(prompt, chat=chat)))

    def trace(self, prompt: str | list[int], *, norm: int = 1, chat: bool = False, store: Any = None,
              keep_layers_bytes: int = 0):
        """Run the model once on `prompt` and return a Trace (importances are computed on demand).

        `store`: None or True uses the default store, the persistent trace store the environment
        names (on by default; `ROUTELENS_STORE=off` disables it, and then True stores nothing
        either), False bypasses it, or pass a `TraceStore`. Anything else raises
        InvalidArgumentError. A stored trace is served without running the model, with the
        importances computed before.

        `keep_layers_bytes`: keep up to that many bytes of the top layers as the forward pass
        computed them, for the first route (it then replays fewer layers: trace/capture.py); the
        rest of the time a trace keeps only its residual stream. `trace.capture.layers.drop_seeds()`
        frees what the first route did not use.
        """
        from ..store import TraceStore, default_store
        from ..trace.capture import run_with_capture
        from ..trace.trace import Trace

        if norm not in (1, 2):
            raise InvalidArgumentError(f"norm must be 1 (L1, the default) or 2 (L2), not {norm!r}")
        if not isinstance(keep_layers_bytes, int) or isinstance(keep_layers_bytes, bool) or keep_layers_bytes < 0:
            raise InvalidArgumentError(f"keep_layers_bytes must be a number of bytes (0 or more), not {keep_layers_bytes!r}")
        if store is None or store is True:
            chosen = default_store()
        elif store is False:
            chosen = None
        elif isinstance(store, TraceStore):
            chosen = store
        else:
            raise InvalidArgumentError(
                f"store must be None or True (the default trace store), False (no store) or a routelens.TraceStore, "
                f"not {type(store).__name__} {store!r}")
        from ..trace.estimate import record_forward

        ids = self.tokenize(prompt, chat=chat)

        def run():  # a forward pass that ran now (not read from the store) teaches the time estimate
            capture = run_with_capture(self.adapter, ids, keep_layers_bytes=keep_layers_bytes)
            record_forward(self.adapter, len(ids), capture.forward_seconds)
            return capture

        if chosen is None:
            return Trace(self, run(), norm=norm)
        return chosen.trace(self, ids, norm, run)
