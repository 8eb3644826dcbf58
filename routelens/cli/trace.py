"""`routelens trace`: trace a prompt, print the top predictions and write the route graph."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.table import Table

from ..errors import EmptyPromptError, InvalidArgumentError, RoutelensError
from . import args as a
from .common import load_model, out_console, route_line, step, store_of, write_out


def add_parser(sub) -> None:
    p = sub.add_parser("trace", help="trace a prompt, print the top predictions and write the route graph")
    a.add_model_options(p)
    p.add_argument("prompt", type=a.prompt, help="the text to trace")
    p.add_argument("--target", default=-1, type=a.target,
                   help="position whose route to build (default -1, the last); 'all' for full mode")
    a.add_tracing_options(p)
    p.add_argument("--top", type=a.top, default=5, help=f"how many predictions to print, 1 to {a.MAX_TOP} (default 5)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the estimated memory and time of this trace and its route, and trace nothing")
    p.add_argument("--out", type=Path, default=None,
                   help="write the route graph here; the extension picks the format: .json .graphml .svg .png .html")


def cmd_trace(args: argparse.Namespace) -> int:
    # the checks argparse cannot make, for callers that build the namespace themselves too
    if not args.prompt.strip():
        raise EmptyPromptError("the prompt is empty: give some text to trace")
    if not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        raise InvalidArgumentError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if not 1 <= args.top <= a.MAX_TOP:
        raise InvalidArgumentError(f"--top must be from 1 to {a.MAX_TOP}, not {args.top}")
    if args.out is not None:
        from ..export import check_output_path

        args.out = check_output_path(args.out)  # an unknown extension, a folder, an unwritable place: before the model loads
    store = store_of(args)  # an unusable $ROUTELENS_STORE too
    model = load_model(args)
    if getattr(args, "dry_run", False):
        return _dry_run(model, args)
    with step(f"tracing {len(args.prompt)} characters"):
        trace = model.trace(args.prompt, norm=1 if args.norm == "l1" else 2, chat=args.chat, store=store)
    target: int | str = args.target if args.target == "all" else _int_arg(str(args.target), "--target")
    pos = trace.n_positions - 1 if target == "all" else trace.position(target)
    print_predictions(trace, pos, args.top)
    with step("building the route graph"):
        graph = trace.graph(target=target, threshold=args.threshold)
    out_console.print(route_line(graph, f"position {target if target == 'all' else pos}", args.threshold))
    if args.out is not None:
        write_out(graph, args.out)
    return 0


def print_predictions(trace, pos: int, k: int) -> None:
    table = Table(title=f"top predictions after {trace.tokens[pos]!r} (position {pos})")
    table.add_column("rank", justify="right")
    table.add_column("token")
    table.add_column("probability", justify="right")
    for rank, (token, prob) in enumerate(trace.top_predictions(pos, k=k), start=1):
        table.add_row(str(rank), repr(token), f"{prob:.4f}")
    out_console.print(table)


def _dry_run(model, args: argparse.Namespace) -> int:
    """`trace --dry-run`: the estimate (trace/estimate.py) for this prompt on this model, nothing traced."""
    est = model.estimate(args.prompt, chat=args.chat)
    mib = 2**20
    out_console.print(
        f"{model.name}, {est.n_tokens} tokens (estimate, nothing traced):\n"
        f"  memory: about {est.peak_bytes / mib:,.0f} MiB at the peak, {est.kept_bytes / mib:,.0f} MiB kept by the trace\n"
        f"  time:   about {est.forward_seconds:,.1f} s for the forward pass, {est.route_seconds:,.1f} s more for the route"
    )
    return 0


def _int_arg(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RoutelensError(f"{flag} must be an integer position (or 'all'), not {value!r}") from None
