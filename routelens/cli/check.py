"""`routelens check`: the exactness checks on a model; exit non-zero if any fails."""

from __future__ import annotations

import argparse

from ..errors import EmptyPromptError
from . import args as a
from .common import load_model, out_console, step, store_of

CHECK_PROMPTS = (
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
)


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="run the exactness checks on a model; exit non-zero if any fails")
    a.add_model_options(p)
    p.add_argument("--prompt", action="append", default=None, type=a.prompt,
                   help="prompt(s) to check (default: two built-in ones)")


def cmd_check(args: argparse.Namespace) -> int:
    prompts = args.prompt or CHECK_PROMPTS
    if not all(p.strip() for p in prompts):
        raise EmptyPromptError("a prompt is empty: give some text to check")
    store = store_of(args)
    model = load_model(args)
    failed = False
    for prompt in prompts:
        with step(f"checking {prompt!r}"):
            trace = model.trace(prompt, store=store)
            report = trace.check()
            sums = trace.importance_sums_error()
        out_console.print(f"[bold]{prompt!r}[/bold] ({trace.n_positions} tokens)")
        out_console.print(str(report), highlight=False)
        out_console.print(f"importances: max |sum - 1| over the route's nodes {sums:.2e}")
        failed |= not report.ok or not sums <= 1e-5  # a NaN sum fails (NaN > 1e-5 is False)
    out_console.print("[bold red]FAIL[/bold red]" if failed else "[bold green]all checks passed[/bold green]")
    return 1 if failed else 0
