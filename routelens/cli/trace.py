"""`routelens trace`: trace a prompt, print the top predictions and write the route graph."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.table import Table

from ..errors import EmptyPromptError, InvalidArgumentError, RoutelensError
from . import args as a
from . import why
from .common import load_model, out_console, route_line, step, store_of, write_out


def add_parser(sub) -> None:
    p = sub.add_parser("trace", help="trace a prompt, print the top predictions and write the route graph")
    a.add_model_options(p)
    p.add_argument("prompt", type=a.prompt, help="the text to trace")
    p.add_argument("--target", default=None, type=a.target,
                   help="position whose route to build (default -1, the last); 'all' for full mode")
    a.add_tracing_options(p)
    p.add_argument("--top", type=a.top, default=5, help=f"how many predictions to print, 1 to {a.MAX_TOP} (default 5)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the estimated memory and time of this trace and its route, and trace nothing")
    p.add_argument("--out", type=Path, default=None,
                   help="write the route graph here; the extension picks the format: .json .graphml .svg .png .html. "
                        f"With --generate, {why.STEP_FIELD} in the name writes every step's route (route-{why.STEP_FIELD}.json)")
    why.add_options(p)


def cmd_trace(args: argparse.Namespace) -> int:
    # the checks argparse cannot make, for callers that build the namespace themselves too
    if not args.prompt.strip():
        raise EmptyPromptError("the prompt is empty: give some text to trace")
    if not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        raise InvalidArgumentError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if not 1 <= args.top <= a.MAX_TOP:
        raise InvalidArgumentError(f"--top must be from 1 to {a.MAX_TOP}, not {args.top}")
    why.check_options(args)
    if args.out is not None:
        from ..export import check_output_path

        # an unknown extension, a folder, an unwritable place: before the model loads
        args.out = _checked_out(args.out, check_output_path)
    store = store_of(args)  # an unusable $ROUTELENS_STORE too
    model = load_model(args)
    if getattr(args, "dry_run", False):
        return _dry_run(model, args)
    norm = 1 if args.norm == "l1" else 2
    token, foil = why.token_of(args), why.foil_of(args)
    if args.verify or args.curve:  # the check's bound, by the token count alone: before anything runs
        from ..routes.verify import check_size

        n_ids = len(model.tokenize(args.prompt, chat=args.chat)) + (args.generate or 0)
        last = n_ids - 1 if args.target in (None, "all") else _int_arg(str(args.target), "--target") % n_ids
        check_size(model.adapter.n_layers, last)
    steps = None
    if args.generate is not None:
        with step(f"generating {args.generate} tokens and tracing the text"):
            generation = model.generate(args.prompt, args.generate, sample=args.sample, seed=args.seed,
                                        temperature=args.temperature if args.temperature is not None else 1.0,
                                        chat=args.chat, norm=norm, store=store)
        trace, steps = generation.trace, generation.steps
        k = args.step if args.step is not None else -1
        pos = generation.position(k)
        target: int | str = pos
        if token is None:
            token = steps[k]["token_id"]
    else:
        with step(f"tracing {len(args.prompt)} characters"):
            trace = model.trace(args.prompt, norm=norm, chat=args.chat, store=store)
        target = -1 if args.target is None else args.target
        target = target if target == "all" else _int_arg(str(target), "--target")
        pos = trace.n_positions - 1 if target == "all" else trace.position(target)
    attribution = None
    if foil is not None or why.token_of(args) is not None:  # asked about a token: its direct logit attribution
        attribution = trace.logit_attribution(pos, token, foil)  # foil == token: the library's error, before output
    if steps is None:
        print_predictions(trace, pos, args.top)
    else:
        why.print_generation(generation)
    if attribution is not None:
        why.print_attribution(attribution)
    with step("building the route graph"):
        graph = trace.graph(target=target, threshold=args.threshold, token=token, foil=foil)
    where = f"position {target if target == 'all' else pos}"
    if steps is not None:
        where = f"step {steps[k]['step']} ({steps[k]['token']!r}, {where})"
    if foil is not None:
        where += f" (contrastive: why {graph.target.get('token')!r} rather than {graph.target.get('foil')!r})"
    out_console.print(route_line(graph, where, args.threshold), highlight=False, soft_wrap=True)
    if args.verify or args.curve:
        _verify(trace, graph, pos, token, foil, args)
    if args.out is not None:
        if steps is not None and why.STEP_FIELD in str(args.out) and args.step is None:
            for s in steps:  # one graph per step
                with step(f"building the route of step {s['step']}"):
                    g = trace.graph(target=s["pos"], threshold=args.threshold, token=s["token_id"], foil=foil)
                write_out(g, why.step_path(args.out, s["step"]))
        else:
            write_out(graph, why.step_path(args.out, steps[k]["step"]) if steps is not None else args.out)
    return 0


def _checked_out(out: Path, check_output_path) -> Path:
    """--out checked before the model loads; with {step} in it, as the file of step 0 would be."""
    if why.STEP_FIELD not in str(out):
        return check_output_path(out)
    check_output_path(why.step_path(out, 0))
    return out.expanduser()


def _verify(trace, graph, pos: int, token, foil, args: argparse.Namespace) -> None:
    """--verify / --curve: the knockout check of the route (of the contrastive route with --foil)."""
    from ..routes.verify import verify_route

    options = dict(renormalise=args.renormalise, trials=args.trials or 5, seed=args.seed or 0)
    prob_of = graph.target.get("token_id", token)  # the probability read is the explained token's
    if args.curve:
        with step(f"checking the route by knockout at {len(why.CURVE_THRESHOLDS)} thresholds"):
            if foil is None:
                reports = trace.verify_curve(pos, why.CURVE_THRESHOLDS, token=prob_of, **options)
            else:
                reports = [verify_route(trace, trace.graph(pos, t, token=token, foil=foil), token=prob_of, **options)
                           for t in why.CURVE_THRESHOLDS]
        why.print_curve(reports)
    if args.verify or not args.curve:
        with step("checking the route by knockout"):
            report = verify_route(trace, graph, token=prob_of, **options)
        why.print_verify(report)


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
    from ..trace.estimate import estimate

    n = len(model.tokenize(args.prompt, chat=args.chat)) + (args.generate or 0)  # a generation traces both
    est = estimate(model.adapter, n)
    mib = 2**20
    more = f" ({args.generate} of them generated, one at a time first)" if args.generate else ""
    out_console.print(
        f"{model.name}, {est.n_tokens} tokens{more} (estimate, nothing traced):\n"
        f"  memory: about {est.peak_bytes / mib:,.0f} MiB at the peak, {est.kept_bytes / mib:,.0f} MiB kept by the trace\n"
        f"  time:   about {est.forward_seconds:,.1f} s for the forward pass, {est.route_seconds:,.1f} s more for the route"
    )
    if args.verify or args.curve:  # each check reruns the prefix: the full run, the route alone, each trial
        runs = (len(why.CURVE_THRESHOLDS) if args.curve else 1) * (1 + (args.trials or 5)) + 1
        out_console.print(f"  check:  {runs} more forward passes of up to {est.n_tokens} tokens, about "
                          f"{runs * est.forward_seconds:,.1f} s", highlight=False)
    return 0


def _int_arg(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RoutelensError(f"{flag} must be an integer position (or 'all'), not {value!r}") from None
