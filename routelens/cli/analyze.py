"""`routelens analyze`: routes over a whole dataset (routelens/analysis, docs/analysis.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from . import args as a
from .common import out_console


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="which heads, FFN blocks and neurons lie on the routes of a whole dataset")
    p.add_argument("dataset", metavar="DATASET",
                   help="a text file (one prompt a line), a JSONL file (a text field, an optional label field) or "
                        "a folder saved by datasets' save_to_disk; `sample` is the shipped sample (prose, code, French)")
    p.add_argument("--model", required=True, type=a.model_name, help="the model (catalog name, hub id or folder)")
    p.add_argument("--positions", choices=["last", "all"], default="last",
                   help="the route from each prompt's last position (default), or from every position")
    p.add_argument("--threshold", type=a.threshold, default=0.04, help="route threshold (default 0.04)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default) or ray (pip install \"routelens[ray]\")")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: `auto` joins a running cluster, an address joins that one; "
                        "none starts Ray on this machine")
    p.add_argument("--workers", type=a.whole(1, 1024), default=None, help="Ray workers (default: one per CPU, at most 2)")
    p.add_argument("--shard-size", type=a.whole(1, 10_000), default=8,
                   help="prompts per shard: the unit written to disk as it finishes, and resumed from (default 8)")
    p.add_argument("--text-field", default="text", help="JSONL / datasets column of the text (default text)")
    p.add_argument("--label-field", default="label", help="JSONL / datasets column of the label (default label)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="compute dtype")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    p.add_argument("--out", type=Path, required=True,
                   help="the output folder: shards, the merged statistics and the report (heads.svg/png, "
                        "previous-token.svg/png, report.json); running the same command again resumes")


def cmd_analyze(args: argparse.Namespace) -> int:
    from ..analysis.dataset import SAMPLE
    from ..analysis.report import load_analysis, write_report
    from ..analysis.run import Spec, analyze

    dataset = str(SAMPLE) if args.dataset == "sample" else str(Path(args.dataset).expanduser().resolve())
    spec = Spec(model=args.model, dataset=dataset, text_field=args.text_field, label_field=args.label_field,
                positions=args.positions, threshold=args.threshold, shard_size=args.shard_size, dtype=args.dtype,
                device=args.device)
    analyze(spec, args.out, executor=args.executor, ray_address=args.ray_address, workers=args.workers)
    analysis = load_analysis(args.out)
    files = write_report(analysis, args.out)
    print_summary(analysis)
    out_console.print(f"wrote {', '.join(f.name for f in files)} in {args.out}", highlight=False)
    return 0


def print_summary(analysis) -> None:
    s = analysis.stats.total()
    out_console.print(f"{analysis.meta['n_prompts']} prompts, {s.routes} routes, labels: "
                      f"{', '.join(analysis.labels) or '(none)'}", highlight=False)
    heads = analysis.previous_token_heads()
    out_console.print("previous-token heads: " + (", ".join(f"L{h['layer']} H{h['head']} ({h['score']:.2f})"
                                                            for h in heads) or "none"), highlight=False)
    merging = analysis.subword_merging_heads()
    out_console.print("subword-merging heads: " + (", ".join(f"L{h['layer']} H{h['head']} ({h['score']:.2f} vs "
                                                             f"{h['elsewhere']:.2f})" for h in merging) or "none"),
                      highlight=False)
    table = Table(title="components whose importance differs most by label (mean per route)")
    for col in ("label", "component", "in label", "rest", "difference"):
        table.add_column(col, justify="right" if col in ("in label", "rest", "difference") else "left")
    for row in analysis.label_differences(3)[:12]:
        name = {"head": f"L{row['layer']} H{row['index']}", "ffn": f"L{row['layer']} FFN",
                "neuron": f"L{row['layer']} N{row['index']}"}[row["kind"]]
        table.add_row(row["label"], name, f"{row['in_label']:.4f}", f"{row['rest']:.4f}", f"{row['difference']:+.4f}")
    out_console.print(table)
