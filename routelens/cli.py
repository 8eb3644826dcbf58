"""The command line: `routelens trace | check | models | cache | serve`.

Over 400 lines on purpose: the argument checks are shared by all five commands and each command's
handler is short; it becomes a package (one module per command) when the next commands come."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.table import Table

from .errors import EmptyPromptError, InvalidArgumentError, RoutelensError

err_console = Console(stderr=True)
out_console = Console()

MAX_TOP = 100  # predictions `trace --top` prints: more is a vocabulary dump, not a table
CHECK_PROMPTS = (
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
)


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


class Parser(argparse.ArgumentParser):
    """argparse with its mistakes said in one line on stderr (exit status 2), like routelens's own."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"routelens: error: {message} (see `{self.prog} --help`)\n")


# Argument types: every value is checked while the command line is read, before a model loads.
def _model_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("no model name given: use a catalog name (see `routelens models`), a hub id or a path")
    return value


def _prompt(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("the prompt is empty: give some text to trace")
    return value


def _top(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= MAX_TOP:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_TOP}, not {value!r}")
    return n


def _threshold(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {value!r}")
    return x


def _target(value: str) -> int | str:
    if value.strip() == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer position (e.g. -1, the last) or 'all', not {value!r}") from None


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 65535, not {value!r}")
    return n


def _host(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"must be an address or name of this machine (e.g. 127.0.0.1), not {value!r}")
    return value


def _checked_by(check_name: str):
    """An argument type that runs a check of routelens.models.loading (imported only when used)."""

    def check(value: str) -> str:
        from .models import loading

        try:
            return getattr(loading, check_name)(value)
        except RoutelensError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    check.__name__ = check_name
    return check


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=_model_name,
                   help="catalog name (see `routelens models`), Hugging Face hub id, model folder or .gguf file")
    p.add_argument("--device", default=None, type=_checked_by("check_device"),
                   help="cpu, cuda, cuda:1 or mps (default: the best available)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="compute dtype (importances are always fp32)")
    p.add_argument("--revision", default=None, type=_checked_by("check_revision"), help="hub revision (branch, tag or commit)")
    p.add_argument("--device-map", default=None, type=_checked_by("check_device_map"),
                   help="passed to transformers: auto, balanced, balanced_low_0, sequential or a device (auto spreads a "
                        "big model over GPUs)")
    _add_store_option(p)


def _add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-store", action="store_true", help="neither read nor write the persistent trace store (or set ROUTELENS_STORE=off)")


def _store(args: argparse.Namespace):
    """The trace store to use: False when --no-store, else the environment's (None if off)."""
    from .store import default_store

    return False if getattr(args, "no_store", False) else (default_store() or False)


def _load(args: argparse.Namespace):
    from .models.loading import load

    with step(f"loading {args.model}"):
        return load(args.model, device=args.device, dtype=args.dtype, revision=args.revision, device_map=args.device_map)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="routelens", description="Information-flow routes of language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("trace", help="trace a prompt, print the top predictions and write the route graph")
    _add_model_options(p)
    p.add_argument("prompt", type=_prompt, help="the text to trace")
    p.add_argument("--target", default=-1, type=_target,
                   help="position whose route to build (default -1, the last); 'all' for full mode")
    p.add_argument("--threshold", type=_threshold, default=0.04,
                   help="keep edges whose importance is above this, from 0 to 1 (default 0.04)")
    p.add_argument("--norm", choices=["l1", "l2"], default="l1", help="proximity norm (default l1, the paper's)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--top", type=_top, default=5, help=f"how many predictions to print, 1 to {MAX_TOP} (default 5)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the estimated memory and time of this trace and its route, and trace nothing")
    p.add_argument("--out", type=Path, default=None,
                   help="write the route graph here; the extension picks the format: .json .graphml .svg .png .html")

    p = sub.add_parser("check", help="run the exactness checks on a model; exit non-zero if any fails")
    _add_model_options(p)
    p.add_argument("--prompt", action="append", default=None, type=_prompt,
                   help="prompt(s) to check (default: two built-in ones)")

    p = sub.add_parser("models", help="list the embedded catalog and what is cached locally")
    p.add_argument("--architectures", action="store_true",
                   help="list the transformers model types routelens decomposes exactly, by family")

    p = sub.add_parser("cache", help="the persistent trace store: ls, info, clear")
    p.add_argument("action", choices=["ls", "info", "clear"], help="ls: list stored traces; info: size and place; clear: remove all")

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--config", default=None, help="a JSON configuration (the LLM Transparency Tool's format works)")
    p.add_argument("--model", default=None, type=_model_name, help="the model to load at start (default: the configuration's, else the catalog default)")
    p.add_argument("--host", default="127.0.0.1", type=_host, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on, 1 to 65535 (default 8000)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", default=None,
                       help="access token the API requires; needed to bind beyond 127.0.0.1. A token on the command line "
                            "is visible to other users of this machine in `ps`: prefer --token-file or $ROUTELENS_TOKEN")
    token.add_argument("--token-file", default=None, type=Path, metavar="FILE",
                       help="read the access token from the first line of FILE (not visible in `ps`)")
    p.add_argument("--insecure", action="store_true", help="allow binding beyond 127.0.0.1 without an access token")
    _add_store_option(p)
    return parser


def cmd_trace(args: argparse.Namespace) -> int:
    # the checks argparse cannot make, for callers that build the namespace themselves too
    if not args.prompt.strip():
        raise EmptyPromptError("the prompt is empty: give some text to trace")
    if not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        raise InvalidArgumentError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if not 1 <= args.top <= MAX_TOP:
        raise InvalidArgumentError(f"--top must be from 1 to {MAX_TOP}, not {args.top}")
    if args.out is not None:
        from .export import check_output_path

        args.out = check_output_path(args.out)  # an unknown extension, a folder, an unwritable place: before the model loads
    store = _store(args)  # an unusable $ROUTELENS_STORE too
    model = _load(args)
    if getattr(args, "dry_run", False):
        return _dry_run(model, args)
    with step(f"tracing {len(args.prompt)} characters"):
        trace = model.trace(args.prompt, norm=1 if args.norm == "l1" else 2, chat=args.chat, store=store)
    target: int | str = args.target if args.target == "all" else _int_arg(str(args.target), "--target")
    pos = trace.n_positions - 1 if target == "all" else trace.position(target)
    table = Table(title=f"top predictions after {trace.tokens[pos]!r} (position {pos})")
    table.add_column("rank", justify="right")
    table.add_column("token")
    table.add_column("probability", justify="right")
    for rank, (token, prob) in enumerate(trace.top_predictions(pos, k=args.top), start=1):
        table.add_row(str(rank), repr(token), f"{prob:.4f}")
    out_console.print(table)
    with step("building the route graph"):
        graph = trace.graph(target=target, threshold=args.threshold)
    out_console.print(
        f"route from position {target if target == 'all' else pos} at threshold {args.threshold}: "
        f"{len(graph.nodes)} nodes, {graph.edge_count()} edges "
        f"({graph.edge_count('attn')} attention, {graph.edge_count('resid')} residual, {graph.edge_count('ffn')} FFN)"
    )
    if args.out is not None:
        from .export import write_graph

        with step(f"writing {args.out.name}"):
            write_graph(graph, args.out)
        out_console.print(f"wrote {args.out}")
    return 0


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


def cmd_check(args: argparse.Namespace) -> int:
    prompts = args.prompt or CHECK_PROMPTS
    if not all(p.strip() for p in prompts):
        raise EmptyPromptError("a prompt is empty: give some text to check")
    store = _store(args)
    model = _load(args)
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


def cmd_models(args: argparse.Namespace) -> int:
    from .models import catalog

    if getattr(args, "architectures", False):
        return _architectures()

    table = Table(title=f"embedded catalog (cache: {catalog.cache_root()})")
    for col in ("name", "cached", "description"):
        table.add_column(col)
    for entry in catalog.CATALOG.values():
        name = entry.name + (" (default)" if entry.default else "")
        table.add_row(name, "yes" if catalog.is_cached(entry.name) else "no", entry.description)
    out_console.print(table)
    out_console.print("Any transformers causal LM also works: a hub id, a local folder or a .gguf file.")
    return 0


def _architectures() -> int:
    """`routelens models --architectures`: every covered `model_type`, by adapter family."""
    from .models.adapters import families, supported_model_types

    table = Table(title=f"architectures with an exact decomposition ({len(supported_model_types())} model types)")
    table.add_column("family")
    table.add_column("model types (config.model_type)")
    by_name: dict[str, set[str]] = {}
    for family in families():
        by_name.setdefault(family.name, set()).update(family.model_types)
    for name, types in by_name.items():
        table.add_row(name, ", ".join(sorted(types)))
    out_console.print(table)
    out_console.print("Any other model_type is refused, saying which types are covered; "
                      "docs/adding-a-model.md says how to add one.")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    import datetime

    from .store import default_store
    from .store.store import STORE_ENV, human

    store = default_store()
    if store is None:
        out_console.print(f"the trace store is off ({STORE_ENV}={os.environ.get(STORE_ENV)!r})")
        return 0
    if args.action == "clear":
        n = store.clear()
        out_console.print(f"removed {n} stored trace{'s' if n != 1 else ''} from {store.root}")
        return 0
    info = store.info()
    if args.action == "info":
        out_console.print(f"trace store: {info['path']}")
        out_console.print(f"{info['entries']} traces, {info['segments']} importance segments, "
                          f"{human(info['bytes'])} of a {human(info['budget'])} budget ({STORE_ENV}_BUDGET)")
        out_console.print(f"on disk: {human(info['disk_bytes'])}, of which {human(info['leftover_bytes'])} in files no "
                          "stored trace names (being written, or left by a killed writer: removed when it is gone)")
        return 0
    table = Table(title=f"stored traces in {info['path']} ({human(info['bytes'])} of {human(info['budget'])})")
    for col in ("key", "model", "tokens", "size", "last used", "prompt"):
        table.add_column(col)
    for e in store.entries():
        used = datetime.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        table.add_row(e.key[:12], e.model, str(e.n_tokens), human(e.size), used, repr(e.preview[:40]))
    out_console.print(table)
    return 0


def _int_arg(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise RoutelensError(f"{flag} must be an integer position (or 'all'), not {value!r}") from None


def say(line: str) -> None:
    """A server log line: whole (never wrapped, a URL stays clickable) and written at once."""
    print(line, flush=True)


STAGE_TEXT = {
    "downloading": "downloading (first time only)",
    "converting": "converting to safetensors (first time only, about a minute)",
    "loading": "loading into memory",
}


def _load_reporter(url: str, default_model: str):
    """Prints each stage of each model load, and the URL to open once the default model is ready."""
    started: dict[str, float] = {}

    def report(slot) -> None:
        now = time.monotonic()
        started.setdefault(slot.name, now)
        stamp = time.strftime("%H:%M:%S")
        if slot.state == "ready":
            ready = f"routelens: {stamp} {slot.name} is ready ({now - started[slot.name]:.1f} s)"
            say(ready + (f": open {url}" if slot.name == default_model else ""))
        elif slot.state == "error":
            say(f"routelens: {stamp} {slot.name} could not be loaded: {slot.error}")
        else:
            say(f"routelens: {stamp} {slot.name}: {STAGE_TEXT.get(slot.stage, slot.stage)}...")

    return report


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.access import check_bind, read_token_file, token_from
    from .server.config import load_config
    from .server.http import bind_port, serve

    config = load_config(args.config, args.model)
    option = args.token if args.token else read_token_file(args.token_file) if args.token_file else None
    token = token_from(option or config.access_token)
    check_bind(args.host, token, args.insecure)  # before any model loads
    config.access_token = token
    config.bind_host = args.host  # its name may be the Host of requests (origins.py)
    if args.no_store:
        config.store = False
    else:
        _store(args)  # an unusable $ROUTELENS_STORE is said now, not at the first request
    sockets = bind_port(args.host, args.port)  # before "serving on": a busy port is one clear line
    try:
        from .server.app import create_app

        url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
        app = create_app(config, report=_load_reporter(url, config.default_model))
        say(f"routelens: serving on {url}" + (" (access token required)" if token else "")
            + f"; loading {config.default_model}")
        serve(app, config, args.host, args.port, sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0


COMMANDS = {"trace": cmd_trace, "check": cmd_check, "models": cmd_models, "cache": cmd_cache, "serve": cmd_serve}


def _quiet_libraries() -> None:
    """Progress bars and warnings of transformers only when a person watches the terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not err_console.is_terminal:
        hf_logging.disable_progress_bar()
    try:  # the hub's retry warnings ("Retrying in 1s [Retry 1/5]") are not for the person at the terminal
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except ImportError:
        pass
    import logging

    logging.getLogger("urllib3").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a mistake argparse said in one line (2)
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except RoutelensError as err:
        print(f"routelens: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system or the network refused something no check above foresaw
        what = f"cannot use {err.filename}: " if getattr(err, "filename", None) else ""
        print(f"routelens: error: {what}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("routelens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
