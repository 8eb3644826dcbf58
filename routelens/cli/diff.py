"""`routelens diff`: one model, two prompts, what changed between their routes (routes/compare.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..errors import EmptyPromptError
from . import args as a
from .common import load_model, out_console, step, store_of

MAX_ROWS = 100  # head and neuron changes listed


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="trace two prompts on one model and show what changed between their routes")
    a.add_model_options(p)
    p.add_argument("prompt_a", type=a.prompt, metavar="PROMPT_A", help="the first text (A)")
    p.add_argument("prompt_b", type=a.prompt, metavar="PROMPT_B", help="the second text (B); changes are B - A")
    p.add_argument("--target-a", type=a.position, default=-1, help="position of A whose route to compare (default -1)")
    p.add_argument("--target-b", type=a.position, default=-1, help="position of B whose route to compare (default -1)")
    a.add_tracing_options(p)
    p.add_argument("--top", type=a.whole(1, MAX_ROWS), default=10,
                   help=f"how many head and neuron changes to list, 1 to {MAX_ROWS} (default 10)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the diff graph (both routes on aligned columns, edges with weight_a, weight_b and "
                        "delta = weight_b - weight_a); the extension picks the format: .json .graphml .svg .png .html")


def cmd_diff(args: argparse.Namespace) -> int:
    from .. import compare

    if not (args.prompt_a.strip() and args.prompt_b.strip()):
        raise EmptyPromptError("a prompt is empty: give two texts to compare")
    if args.out is not None:
        from ..export import check_output_path

        args.out = check_output_path(args.out)
    store = store_of(args)
    model = load_model(args)
    norm = 1 if args.norm == "l1" else 2
    traces = []
    for name, prompt in (("A", args.prompt_a), ("B", args.prompt_b)):
        with step(f"tracing {name} ({len(prompt)} characters)"):
            traces.append(model.trace(prompt, norm=norm, chat=args.chat, store=store))
    with step("comparing the two routes"):
        comparison = compare(traces[0], traces[1], target_a=args.target_a, target_b=args.target_b,
                             threshold=args.threshold, top=args.top)
    target = comparison.graph.target
    for side in ("a", "b"):
        pos = target[f"pos_{side}"]
        out_console.print(f"{side.upper()}: route from position {pos} ({traces['ab'.index(side)].tokens[pos]!r}), "
                          f"predicting {target[f'token_{side}']!r}", highlight=False, soft_wrap=True)
    if not all(c["same"] for c in comparison.alignment):
        out_console.print("alignment (A→B where they differ): " + " ".join(_column(c) for c in comparison.alignment),
                          highlight=False, soft_wrap=True)
    edges = comparison.graph.edges
    out_console.print(f"diff graph at threshold {args.threshold}: {len(edges)} edges "
                      f"({sum(1 for e in edges if e['weight_b'] == 0)} only in A, "
                      f"{sum(1 for e in edges if e['weight_a'] == 0)} only in B)", highlight=False, soft_wrap=True)
    _table("heads whose importance changed most (B - A)", ("layer", "head"), comparison.heads,
           lambda r: (str(r["layer"]), f"H{r['head']}"))
    _table("neurons whose importance changed most (B - A)", ("layer", "neuron"), comparison.neurons,
           lambda r: (str(r["layer"]), str(r["neuron"])))
    if args.out is not None:
        with step(f"writing {args.out.name}"):
            comparison.graph.save(args.out)
        out_console.print(f"wrote {args.out}")
    return 0


def _column(c: dict) -> str:
    if c["same"]:
        return repr(c["token_a"])
    a_, b_ = ("∅" if t is None else repr(t) for t in (c["token_a"], c["token_b"]))
    return f"[{a_}→{b_}]"


def _table(title: str, keys: tuple[str, str], rows: list[dict], key) -> None:
    table = Table(title=title)
    for col in (*keys, "A", "B", "change"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*key(r), f"{r['a']:.4f}", f"{r['b']:.4f}", f"{r['delta']:+.4f}")
    out_console.print(table)
