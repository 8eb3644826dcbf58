"""Routes along a generated continuation: generate N tokens, then trace the whole text in one pass.

A causal model's forward pass over the final text computes, at every position, exactly what it
computed while generating (the same inputs to the left), so one trace serves every step: step k's
route is the route from position `prompt_length - 1 + k`, whose prediction was token k. Generation
itself uses transformers' `generate` (with its KV cache) when the model has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InvalidArgumentError
from .capture import model_lock

if TYPE_CHECKING:
    from ..models.model import Model
    from ..routes.graph import RouteGraph
    from .trace import Trace

MAX_NEW_TOKENS = 512


@dataclass
class Generation:
    """A prompt, its generated continuation and one trace of the two together.

    `steps[k]`: {"step", "pos" (the position that predicted it), "token", "token_id", "prob" (the
    model's probability of it there), "rank" (0 = the top prediction; sampling may pick others)}."""

    trace: Trace
    prompt_length: int
    steps: list[dict[str, Any]]
    sampled: bool
    seed: int | None
    temperature: float

    def __repr__(self) -> str:
        text = "".join(s["token"] for s in self.steps)
        shown = text if len(text) <= 50 else text[:47] + "..."
        return (f"<routelens.Generation {self.trace.model.name!r}, {len(self.steps)} tokens "
                f"{'sampled' if self.sampled else 'greedy'}: {shown!r}>")

    def position(self, step: int) -> int:
        """The position whose prediction was generated token `step` (negative counts from the end)."""
        n = len(self.steps)
        if isinstance(step, bool) or not isinstance(step, int) or not -n <= step < n:
            raise InvalidArgumentError(f"step {step!r} is out of range: this generation has steps 0..{n - 1}")
        return self.steps[step % n]["pos"]

    def graph(self, step: int = -1, threshold: float = 0.04, *, foil: int | str | None = None,
              max_edges: int | None = None) -> RouteGraph:
        """The route of generation step `step` (its target token is the token generated there)."""
        pos = self.position(step)  # checks the step first
        s = self.steps[step % len(self.steps)]
        return self.trace.graph(pos, threshold, token=s["token_id"], foil=foil, max_edges=max_edges)

    def graphs(self, threshold: float = 0.04, *, max_edges: int | None = None) -> list[RouteGraph]:
        """Every step's route at `threshold`. The importances are computed in one top-down pass for
        all steps together (the routes share most of their lower nodes: one batched call per layer),
        then each step's graph is read from those cached rows."""
        if not self.steps:
            return []
        self.trace.graph([s["pos"] for s in self.steps], threshold, max_edges=max_edges)
        return [self.graph(k, threshold, max_edges=max_edges) for k in range(len(self.steps))]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_length": self.prompt_length, "steps": self.steps, "sampled": self.sampled,
                "seed": self.seed, "temperature": self.temperature}


def check_options(n: Any, sample: Any, seed: Any, temperature: Any) -> None:
    """Raise InvalidArgumentError, saying what to give, for options generate cannot use
    (a temperature other than 1 without sampling too: greedy decoding has none)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS:
        raise InvalidArgumentError(f"the number of tokens to generate must be 1..{MAX_NEW_TOKENS}, not {n!r}")
    if not isinstance(sample, bool):
        raise InvalidArgumentError(f"sample must be true (sampling) or false (greedy), not {sample!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InvalidArgumentError(f"seed must be a whole number 0 or more, not {seed!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < float(temperature) <= 10:
        raise InvalidArgumentError(f"temperature must be a number above 0 and at most 10, not {temperature!r}")
    if not sample and float(temperature) != 1.0:
        raise InvalidArgumentError(f"temperature {temperature!r} applies to sampling only; add sample=True, or leave "
                                   "the temperature at 1 for greedy decoding")


@torch.no_grad()
def generate_ids(model: Model, ids: torch.Tensor, n: int, *, sample: bool, seed: int | None,
                 temperature: float) -> list[int]:
    """The new token ids (at most n: generation stops early at the end-of-sequence token).

    transformers' `generate` with its cache for a transformers model; for a backend that runs
    itself (TransformerLens) a plain loop over the whole sequence. Sampling draws from a torch
    generator seeded with `seed`, so a seed gives the same tokens again."""
    adapter = model.adapter
    hf = adapter.model
    device = next(hf.parameters()).device
    prompt = ids.to(device)[None]
    gen = torch.Generator(device="cpu").manual_seed(seed if seed is not None else 0)
    from ..models.adapters.base import Adapter

    runs_itself = type(adapter).forward_logits is not Adapter.forward_logits  # e.g. TransformerLens
    with model_lock(hf):
        if not runs_itself and hasattr(hf, "generate"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                eos = getattr(model.tokenizer, "eos_token_id", None)
                out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                  min_new_tokens=0, do_sample=sample, temperature=float(temperature) if sample else None,
                                  top_k=0 if sample else None, top_p=1.0 if sample else None,
                                  pad_token_id=eos if eos is not None else 0, eos_token_id=eos)
            return out[0, prompt.shape[1]:].tolist()
        new: list[int] = []
        seq = prompt
        for _ in range(n):
            logits = adapter.forward_logits(seq)[0, -1].float()  # type: ignore[index]
            if sample:
                choice = int(torch.multinomial((logits / float(temperature)).softmax(-1).cpu(), 1, generator=gen))
            else:
                choice = int(logits.argmax())
            new.append(choice)
            seq = torch.cat([seq, torch.tensor([[choice]], device=device)], dim=1)
            if choice == getattr(model.tokenizer, "eos_token_id", None):
                break
        return new


def steps_of(trace: Trace, prompt_length: int, new_ids: list[int]) -> list[dict[str, Any]]:
    """Each generated token with the position that predicted it and the model's probability and
    rank of it there, read from the one trace (its logit lens at the last layer is the model's logits)."""
    steps = []
    for k, tid in enumerate(new_ids):
        pos = prompt_length - 1 + k
        logits = trace._lens("block", trace.n_layers - 1, pos, True)
        probs = logits.softmax(-1)
        steps.append({"step": k, "pos": pos, "token": trace.model.token_strings([tid])[0], "token_id": tid,
                      "prob": float(probs[tid]), "rank": int((logits > logits[tid]).sum())})
    return steps
