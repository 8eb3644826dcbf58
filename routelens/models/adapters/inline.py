"""Families whose transformers attention is computed inline (GPT-Neo, Bloom, Falcon in transformers 5.x).

routelens traces a model by running its attention through the "routelens" attention function
(trace/attention.py), which calls the family's `eager_attention_forward` on blocks of query rows
and records the queries, keys and mask so that any pattern row can be recomputed exactly. These
three families never call `ALL_ATTENTION_FUNCTIONS`: their attention modules do the softmax inline.
Their adapters therefore swap the class of each attention module (and, where the module also adds
the residual or a later in-place add would overwrite a recorded write, of the block or FFN) for a
subclass whose forward is the original one, operation for operation, except that the attention
itself is a call `attention(module, query, key, value, mask, **kwargs)`:

- `attention` is `ALL_ATTENTION_FUNCTIONS[config._attn_implementation]` for a registered function
  that is not one of transformers' own kernels: routelens's (trace/attention.py), or a test's
  recording one. Such a function calls the family's `eager_attention_forward`, which it finds in the
  modeling file of the module's class: the swapped class lives in the family file, which defines it
  with the original's math and dtypes (and a layout that lets any block of query rows be computed
  on its own). In "eager" mode, `attention` is that eager function itself;
- in sdpa / flash / flex mode (the user switched the model), the subclass calls the original
  forward: the model runs exactly as transformers would run it.

Models check at the classes' level whether their attention implementation may be set at all
(a heuristic on their modeling file that says no for these three); the adapter allows it for the
one model instance it wraps, so that routelens can switch it to "routelens" (no class-wide change).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .declare import DeclaredAdapter

KERNELS = ("sdpa", "flash", "flex", "paged")  # prefixes of transformers' own attention kernels


def routed(config: Any) -> bool:
    """Whether the swapped classes compute the attention themselves (eager, or a registered
    function that wraps the eager one), rather than calling the original forward (sdpa, flash...)."""
    impl = getattr(config, "_attn_implementation", None) or "eager"
    return impl == "eager" or not (impl.startswith(KERNELS) or "/" in impl)  # "org/repo": a hub kernel


def attention_function(config: Any, eager: Callable[..., Any]) -> Callable[..., Any]:
    """The attention function the model is set to (module docstring), `eager` in eager mode."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = getattr(config, "_attn_implementation", None) or "eager"
    return eager if impl == "eager" else ALL_ATTENTION_FUNCTIONS.get(impl, eager)


def swap_class(module: nn.Module, routed_class: type) -> None:
    """Give `module` the routed subclass of its class (no-op when it has it: adapters are built more
    than once per model). The subclass adds no state: parameters, buffers and hooks stay as they are."""
    if not isinstance(module, routed_class):
        if not isinstance(module, routed_class.__mro__[1]):
            raise TypeError(f"{type(module).__name__} is not a {routed_class.__mro__[1].__name__}")
        module.__class__ = routed_class


def allow_attention_switch(model: nn.Module) -> None:
    """Let transformers' `set_attn_implementation` switch this model instance (not its class)."""
    for sub in model.modules():
        if hasattr(type(sub), "_can_set_attn_implementation"):
            sub._can_set_attn_implementation = _yes  # an instance attribute hides the classmethod


def _yes() -> bool:
    return True


class InlineAdapter(DeclaredAdapter):
    """A declared adapter whose model's blocks return tuples `(hidden, weights)` and whose model
    loop reads `outputs[0]` (GPT-Neo, Bloom, Falcon): capture.py's identity pass (stored traces)
    answers them in that shape (`block_returns_tuple`)."""

    block_returns_tuple = True
