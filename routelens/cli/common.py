"""What every command shares: the two consoles, the progress lines and loading a model or the store."""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console

err_console = Console(stderr=True)
out_console = Console()


@contextmanager
def step(message: str) -> Iterator[None]:
    """Show a spinner on stderr while a long step runs, then how long it took."""
    if not err_console.is_terminal:  # keep stderr to errors only when it is piped or captured
        yield
        return
    start = time.perf_counter()
    with err_console.status(message):
        yield
    err_console.print(f"[dim]{message} done in {time.perf_counter() - start:.1f}s[/dim]", highlight=False)


def store_of(args: argparse.Namespace):
    """The trace store to use: False when --no-store, else the environment's (None if off)."""
    from ..store import default_store

    return False if getattr(args, "no_store", False) else (default_store() or False)


def load_model(args: argparse.Namespace):
    from ..models.loading import load

    with step(f"loading {args.model}"):
        return load(args.model, device=args.device, dtype=args.dtype, revision=args.revision, device_map=args.device_map)


def write_out(graph, path) -> None:
    """Write a route graph to `path` (checked before the model loaded) and say so."""
    from ..export import write_graph

    with step(f"writing {path.name}"):
        write_graph(graph, path)
    out_console.print(f"wrote {path}")


def route_line(graph, where: str, threshold: float) -> str:
    """One line saying what a route graph holds."""
    return (f"route from {where} at threshold {threshold}: {len(graph.nodes)} nodes, {graph.edge_count()} edges "
            f"({graph.edge_count('attn')} attention, {graph.edge_count('resid')} residual, "
            f"{graph.edge_count('ffn')} FFN)")
