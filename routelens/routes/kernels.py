"""The one hot loop of routelens: L1 proximities of every (node, head, source) part.

`sum_d |y_d| - |y_d - a * s_d * u_d|` over P x H x J parts of width d has no matrix-product form.
Run eagerly, torch materialises several P x H x J x d temporaries (about 0.2 G elements/s on two
CPU cores); compiled by torch.compile (inductor) it becomes one fused loop with no temporaries
(6-9 G elements/s). The compiled kernel is used for large jobs when it builds on this machine,
the chunked eager one otherwise, and `ROUTELENS_COMPILE=0` turns compilation off.
"""

from __future__ import annotations

import os
import threading
import warnings

import torch

# Elements of one eager chunk (bounds its temporaries to ~64 MB).
EAGER_CHUNK_ELEMENTS = 1 << 24
# Below this many elements the eager loop beats a compile (about 2 s with a warm inductor cache,
# 15-20 s the first time on a machine); once compiled, the kernel serves every size.
COMPILE_MIN_ELEMENTS = 1 << 25

_compiled = None  # the compiled kernel; False once compiling failed or was turned off
# One compiled call at a time: a server warms the kernel in a thread while requests may arrive.
_lock = threading.Lock()


def _l1_parts(y: torch.Tensor, a: torch.Tensor, u: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
    """y [P, d], a [P, H, J], u [H, J, d], s [P, d] or None -> [P, H, J]."""
    yb = y[:, None, None, :]
    z = a[..., None] * u[None]
    if s is not None:
        z = z * s[:, None, None, :]
    return (yb.abs() - (yb - z).abs()).sum(-1)


def _eager(y, a, u, s) -> torch.Tensor:
    n_pos, n_heads, n_src = a.shape
    out = torch.empty(n_pos, n_heads, n_src, dtype=torch.float32, device=y.device)
    step = max(1, EAGER_CHUNK_ELEMENTS // max(n_heads * n_src * y.shape[-1], 1))
    for start in range(0, n_pos, step):
        stop = min(start + step, n_pos)
        out[start:stop] = _l1_parts(y[start:stop], a[start:stop], u, s[start:stop] if s is not None else None)
    return out


def _padded(kernel, y, a, u, s) -> torch.Tensor:
    """Call the compiled kernel with P, H, J >= 2: dynamo specialises sizes 0 and 1, and each
    specialisation would cost a fresh compile. Padding parts have zero attention (z = 0)."""
    n_pos, n_heads, n_src = a.shape
    pp, ph, pj = max(0, 2 - n_pos), max(0, 2 - n_heads), max(0, 2 - n_src)
    if pp or ph or pj:
        y = torch.nn.functional.pad(y, (0, 0, 0, pp))
        a = torch.nn.functional.pad(a, (0, pj, 0, ph, 0, pp))
        u = torch.nn.functional.pad(u, (0, 0, 0, pj, 0, ph))
        s = torch.nn.functional.pad(s, (0, 0, 0, pp)) if s is not None else None
    return kernel(y, a, u, s)[:n_pos, :n_heads, :n_src]


def _get_compiled():
    global _compiled
    if _compiled is None:
        if os.environ.get("ROUTELENS_COMPILE", "1") == "0":
            _compiled = False
        else:
            _compiled = torch.compile(_l1_parts, dynamic=True)
    return _compiled


def l1_prox_heads(
    y: torch.Tensor, a: torch.Tensor, u: torch.Tensor, s: torch.Tensor | None, *, compiled: bool | None = None
) -> torch.Tensor:
    """Unclamped L1 proximities [P, H, J]; `compiled` forces a path (None: by job size)."""
    global _compiled
    # Contiguous fp32 inputs: a new stride pattern would make dynamo recompile the kernel.
    y, a, u = y.float().contiguous(), a.float().contiguous(), u.float().contiguous()
    s = s.float().contiguous() if s is not None else None
    size = a.numel() * y.shape[-1]
    use = compiled if compiled is not None else (size >= COMPILE_MIN_ELEMENTS or bool(_compiled))
    if use:
        with _lock:
            kernel = _get_compiled()
            if kernel:
                try:
                    return _padded(kernel, y, a, u, s)
                except Exception as err:  # no C++ compiler, unsupported platform, ...
                    warnings.warn(f"routelens: torch.compile failed ({type(err).__name__}); using the slower eager kernel")
                    _compiled = False
    return _eager(y, a, u, s)


def warm_up() -> bool:
    """Compile the kernel now (a server or benchmark calls this before timing); True if it built.

    Distinct sizes per dimension so dynamo's duck sizing ties no two dimensions together."""
    y, a, u, s = torch.randn(2, 7), torch.rand(2, 3, 5), torch.randn(3, 5, 7), torch.rand(2, 7)
    l1_prox_heads(y, a, u, None, compiled=True)
    l1_prox_heads(y, a, u, s, compiled=True)
    return bool(_compiled)
