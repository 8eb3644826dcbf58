"""The command line: `routelens trace | check | models | cache | serve`."""

from __future__ import annotations

import argparse
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


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="catalog name (see `routelens models`), Hugging Face hub id, model folder or .gguf file")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or mps (default: the best available)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="compute dtype (importances are always fp32)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--device-map", default=None, help="passed to transformers, e.g. auto to spread a big model over GPUs")
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
    parser = argparse.ArgumentParser(prog="routelens", description="Information-flow routes of language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("trace", help="trace a prompt, print the top predictions and write the route graph")
    _add_model_options(p)
    p.add_argument("prompt", help="the text to trace")
    p.add_argument("--target", default="-1", help="position whose route to build (default -1, the last); 'all' for full mode")
    p.add_argument("--threshold", type=float, default=0.04, help="keep edges whose importance is above this (default 0.04)")
    p.add_argument("--norm", choices=["l1", "l2"], default="l1", help="proximity norm (default l1, the paper's)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--top", type=int, default=5, help="how many predictions to print")
    p.add_argument("--out", type=Path, default=None,
                   help="write the route graph here; the extension picks the format: .json .graphml .svg .png .html")

    p = sub.add_parser("check", help="run the exactness checks on a model; exit non-zero if any fails")
    _add_model_options(p)
    p.add_argument("--prompt", action="append", default=None, help="prompt(s) to check (default: two built-in ones)")

    sub.add_parser("models", help="list the embedded catalog and what is cached locally")

    p = sub.add_parser("cache", help="the persistent trace store: ls, info, clear")
    p.add_argument("action", choices=["ls", "info", "clear"], help="ls: list stored traces; info: size and place; clear: remove all")

    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--config", default=None, help="a JSON configuration (the LLM Transparency Tool's format works)")
    p.add_argument("--model", default=None, help="the model to load at start (default: the configuration's, else the catalog default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=None, help="access token the API requires (default $ROUTELENS_TOKEN); needed to bind beyond 127.0.0.1")
    p.add_argument("--insecure", action="store_true", help="allow binding beyond 127.0.0.1 without an access token")
    _add_store_option(p)
    return parser


def cmd_trace(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise EmptyPromptError("the prompt is empty: give some text to trace")
    if not 0.0 <= args.threshold <= 1.0:
        raise InvalidArgumentError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if args.out is not None:
        from .export import format_of

        format_of(args.out)  # an unknown extension is refused before the model loads
    model = _load(args)
    with step(f"tracing {len(args.prompt)} characters"):
        trace = model.trace(args.prompt, norm=1 if args.norm == "l1" else 2, chat=args.chat, store=_store(args))
    target: int | str = args.target if args.target == "all" else _int_arg(args.target, "--target")
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


def cmd_check(args: argparse.Namespace) -> int:
    model = _load(args)
    failed = False
    for prompt in args.prompt or CHECK_PROMPTS:
        with step(f"checking {prompt!r}"):
            trace = model.trace(prompt, store=_store(args))
            report = trace.check()
            sums = trace.importance_sums_error()
        out_console.print(f"[bold]{prompt!r}[/bold] ({trace.n_positions} tokens)")
        out_console.print(str(report), highlight=False)
        out_console.print(f"importances: max |sum - 1| over the route's nodes {sums:.2e}")
        failed |= not report.ok or sums > 1e-5
    out_console.print("[bold red]FAIL[/bold red]" if failed else "[bold green]all checks passed[/bold green]")
    return 1 if failed else 0


def cmd_models(_args: argparse.Namespace) -> int:
    from .models import catalog

    table = Table(title=f"embedded catalog (cache: {catalog.cache_root()})")
    for col in ("name", "cached", "description"):
        table.add_column(col)
    for entry in catalog.CATALOG.values():
        name = entry.name + (" (default)" if entry.default else "")
        table.add_row(name, "yes" if catalog.is_cached(entry.name) else "no", entry.description)
    out_console.print(table)
    out_console.print("Any transformers causal LM also works: a hub id, a local folder or a .gguf file.")
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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server.app import create_app
    from .server.config import load_config

    from .server.access import check_bind, token_from

    config = load_config(args.config, args.model)
    token = token_from(args.token or config.access_token)
    check_bind(args.host, token, args.insecure)  # before any model loads
    config.access_token = token
    if args.no_store:
        config.store = False
    app = create_app(config)
    out_console.print(f"routelens: serving {config.default_model} on http://{args.host}:{args.port}/"
                      + (" (access token required)" if token else ""))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


COMMANDS = {"trace": cmd_trace, "check": cmd_check, "models": cmd_models, "cache": cmd_cache, "serve": cmd_serve}


def _quiet_libraries() -> None:
    """Progress bars and warnings of transformers only when a person watches the terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not err_console.is_terminal:
        hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except RoutelensError as err:
        print(f"routelens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("routelens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
