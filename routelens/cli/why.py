"""The why-options of `routelens trace` (docs/cli.md, "Asking why"): a contrast against a foil token
with its direct logit attribution (--foil), a generated continuation with a route per step
(--generate) and the knockout check of a route (--verify, --curve). trace.py runs them; this
module declares them, checks how they combine before a model loads, and prints their results."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from ..errors import InvalidArgumentError
from ..routes.verify import CURVE_THRESHOLDS, MAX_TRIALS
from ..trace.generation import MAX_NEW_TOKENS  # the library's bounds, said while the command line is read
from . import args as a
from .common import out_console

ATTRIBUTIONS = 10  # direct logit attributions printed, largest |value| first
STEP_FIELD = "{step}"  # in --out with --generate: one graph per step


def token_text(value: str) -> str:
    if value == "":
        raise argparse.ArgumentTypeError("is empty: give a token's text such as ' Paris' (quotes keep the space), "
                                         "or its id with --foil-id or --token-id")
    return value


def temperature(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and 0.0 < x <= 10.0):
        raise argparse.ArgumentTypeError(f"must be a number above 0 and at most 10, not {value!r}")
    return x


def add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("why this token rather than another (--foil)")
    foil = g.add_mutually_exclusive_group()
    foil.add_argument("--foil", type=token_text, default=None, metavar="TEXT",
                      help="the contrast 'why the token rather than FOIL': a token's text, e.g. ' London' (quotes keep "
                           "the space); prints the logit difference and its largest direct logit attributions, and "
                           "--out writes the contrastive route")
    foil.add_argument("--foil-id", type=a.whole(0, 2**31 - 1), default=None, metavar="ID", help="the foil by token id")
    token = g.add_mutually_exclusive_group()
    token.add_argument("--token", type=token_text, default=None, metavar="TEXT",
                       help="the token to explain (default: the model's top prediction at the target, or the "
                            "generated token with --generate); alone, its logit's direct attributions")
    token.add_argument("--token-id", type=a.whole(0, 2**31 - 1), default=None, metavar="ID", help="the token by id")

    g = p.add_argument_group("routes along a generated continuation (--generate)")
    g.add_argument("--generate", type=a.whole(1, MAX_NEW_TOKENS), default=None, metavar="N",
                   help=f"generate up to N tokens (1 to {MAX_NEW_TOKENS}) after the prompt, print each with its "
                        "probability and rank; each step's target is the position that predicted it")
    g.add_argument("--step", type=a.position, default=None, metavar="K",
                   help="the step whose route --out, --foil and --verify use (default -1, the last). With "
                        f"{STEP_FIELD} in --out (route-{STEP_FIELD}.json) and no --step, every step's route is written")
    g.add_argument("--sample", action="store_true", help="sample the continuation instead of greedy decoding")
    g.add_argument("--temperature", type=temperature, default=None, help="sampling temperature, above 0 up to 10 (default 1)")
    g.add_argument("--seed", type=a.whole(0, 2**63 - 1), default=None,
                   help="seed of --sample and of --verify's random knockouts (default 0)")

    g = p.add_argument_group("checking the route by knockout (--verify)")
    g.add_argument("--verify", action="store_true",
                   help="run the model with only the route's attention edges, and with random knockouts of the same "
                        "weight; print the probability kept and whether the route beats random (docs/verify.md)")
    g.add_argument("--curve", action="store_true",
                   help=f"the check at thresholds {', '.join(map(str, CURVE_THRESHOLDS))}, as a table (implies --verify)")
    g.add_argument("--renormalise", action="store_true", help="divide each edited attention row by its new sum")
    g.add_argument("--trials", type=a.whole(1, MAX_TRIALS, " (each is a forward pass)"), default=None, metavar="N",
                   help=f"random knockouts per check, 1 to {MAX_TRIALS} (default 5)")


def given(args: argparse.Namespace, *names: str) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) not in (None, False)]


def check_options(args: argparse.Namespace) -> None:
    """How the options combine, said before a model loads (InvalidArgumentError: exit status 2).
    A namespace built without these options (a caller of cmd_trace) gets their defaults."""
    for name in ("foil", "foil_id", "token", "token_id", "generate", "step", "temperature", "seed", "trials", "target"):
        setattr(args, name, getattr(args, name, None))
    for name in ("sample", "verify", "curve", "renormalise"):
        setattr(args, name, getattr(args, name, False))
    generate = args.generate
    if generate is not None and args.target is not None:
        raise InvalidArgumentError("--target and --generate do not go together: each generated token's target is the "
                                   "position that predicted it; pick a step's route with --step K instead")
    if generate is None and (stray := given(args, "step", "sample", "temperature")):
        raise InvalidArgumentError(f"{stray[0]} goes with --generate N: add --generate, or leave {stray[0]} out")
    if args.temperature is not None and not args.sample:
        raise InvalidArgumentError("--temperature is the sampling temperature: add --sample, or leave it out")
    if args.seed is not None and not (args.sample or args.verify or args.curve):
        raise InvalidArgumentError("--seed seeds --sample and --verify: add one of them, or leave --seed out")
    if not (args.verify or args.curve) and (stray := given(args, "renormalise", "trials")):
        raise InvalidArgumentError(f"{stray[0]} goes with --verify (or --curve): add it, or leave {stray[0]} out")
    if generate is not None and args.step is not None and not -generate <= args.step < generate:
        raise InvalidArgumentError(f"--step {args.step} is out of range: --generate {generate} has steps 0..{generate - 1} "
                                   "(or -1 for the last)")
    if args.target == "all" and (stray := given(args, "foil", "foil_id", "token", "token_id", "verify", "curve")):
        raise InvalidArgumentError(f"{stray[0]} needs one target position, not 'all': give --target -1 (the last) "
                                   "or another position")
    if generate is None and args.out is not None and STEP_FIELD in str(args.out):
        raise InvalidArgumentError(f"{STEP_FIELD} in --out names one file per generated step: add --generate N")


def token_of(args: argparse.Namespace) -> int | str | None:
    return args.token_id if args.token_id is not None else args.token


def foil_of(args: argparse.Namespace) -> int | str | None:
    return args.foil_id if args.foil_id is not None else args.foil


def step_path(out: Path, step: int) -> Path:
    return Path(str(out).replace(STEP_FIELD, str(step)))


# ---- printing -----------------------------------------------------------------------------------
def components(attribution: dict[str, Any]) -> list[tuple[str, float]]:
    """Every part's direct logit attribution, named as printed: "embed", "L3 H1", "L3 bias", "L3 FFN"."""
    rows = [("embed", attribution["embed"])]
    for layer in attribution["layers"]:
        n = layer["layer"]
        rows += [(f"L{n} H{h}", v) for h, v in enumerate(layer["heads"])]
        rows += [(f"L{n} bias", layer["attn_bias"])] if layer["attn_bias"] else []  # a model with no b_O: no row
        rows.append((f"L{n} FFN", layer["ffn"]))
    return rows


def print_attribution(attribution: dict[str, Any]) -> None:
    """The logit difference (or the token's logit, with no foil), its largest direct logit
    attributions and the check that they sum to it."""
    token, foil, pos = attribution["token"], attribution["foil"], attribution["pos"]
    what = "logit difference" if foil is not None else "logit"
    name = f"{token!r} rather than {foil!r}" if foil is not None else f"{token!r}"
    out_console.print(f"why {name} at position {pos}: {what} {attribution['logit_diff']:.4f}", highlight=False, soft_wrap=True)
    rows = sorted(components(attribution), key=lambda r: -abs(r[1]))[:ATTRIBUTIONS]
    width = max(len(label) for label, _ in rows)
    out_console.print(f"largest direct logit attributions ({len(rows)} of {len(components(attribution))} parts):",
                      highlight=False, soft_wrap=True)
    for label, value in rows:
        out_console.print(f"  {label:<{width}}  {value:+.4f}", highlight=False, soft_wrap=True)
    total = attribution["total"]
    out_console.print(f"sum of attributions + constant = {what}: {total:.4f} = {attribution['logit_diff']:.4f}"
                      + (f" (constant {attribution['constant']:+.4f})" if attribution["constant"] else ""),
                      highlight=False, soft_wrap=True)


def print_generation(generation) -> None:
    text = "".join(s["token"] for s in generation.steps)
    how = (f"sampled at temperature {generation.temperature:g}, seed {generation.seed or 0}"
           if generation.sampled else "greedy")
    out_console.print(f"continuation ({len(generation.steps)} tokens, {how}): {text!r}", highlight=False, soft_wrap=True)
    table = Table(title="generated tokens")
    for col, justify in (("step", "right"), ("position", "right"), ("token", "left"), ("probability", "right"),
                         ("rank", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in generation.steps:
        table.add_row(str(s["step"]), str(s["pos"]), repr(s["token"]), f"{s['prob']:.4f}", str(s["rank"] + 1))
    out_console.print(table)


def print_verify(report) -> None:
    r = report.to_dict()
    randoms = [x["prob"] for x in r["random"]]
    out_console.print(
        f"knockout check of the route at threshold {r['threshold']:g} to {r['target']['token']!r} at position "
        f"{r['target']['pos']}{' (renormalised rows)' if r['renormalise'] else ''}:\n"
        f"  full run:    p = {r['full']['prob']:.4f}\n"
        f"  route only:  p = {r['route']['prob']:.4f} ({r['shares']['prob']:.1%} of the full probability), "
        f"{r['route']['kept_edges']} attention edges kept, {r['route']['removed_weight']:.2f} of "
        f"{r['total_weight']:.2f} attention weight removed\n"
        f"  random:      p = {r['random_mean']['prob']:.4f} mean, {max(randoms):.4f} max over {len(randoms)} "
        f"knockouts of the same weight (seed {r['seed']})\n"
        + (f"  logit difference to {r['target']['foil']!r}: full {r['full']['diff']:.4f}, route only "
           f"{r['route']['diff']:.4f}, random mean {r['random_mean']['diff']:.4f}, max "
           f"{max(x['diff'] for x in r['random']):.4f}\n" if r["measure"] == "diff" else "")
        + f"beats random ({'logit difference' if r['measure'] == 'diff' else 'probability'}): "
        f"{'yes' if r['beats_random'] else 'no'}", highlight=False, soft_wrap=True)


def print_curve(reports: list) -> None:
    first = reports[0]
    table = Table(title=f"knockout curve to {first.token!r} at position {first.pos}"
                        f"{' (renormalised rows)' if first.renormalise else ''}, {len(first.random)} random "
                        f"knockouts each")
    for col in ("threshold", "edges", "removed", "route p", "share", "random p", "rnd max", "beats"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in reports:
        table.add_row(f"{r.threshold:g}", str(r.route["kept_edges"]), f"{r.route['removed_weight']:.2f}",
                      f"{r.route['prob']:.4f}", f"{r.shares['prob']:.1%}", f"{r.random_mean['prob']:.4f}",
                      f"{max(x['prob'] for x in r.random):.4f}", "yes" if r.beats_random else "no")
    out_console.print(table)
    out_console.print(f"full run: p = {first.full['prob']:.4f}; edges: attention edges kept; removed: attention weight "
                      "removed; random p / rnd max: mean and max over the random knockouts; beats: route p above "
                      "all of them", highlight=False, soft_wrap=True)
