"""The command line: `routelens trace | diff | analyze | check | models | cache | serve`.

One module per command (trace.py and why.py: `trace` and its why-options; diff.py, check.py,
models.py: `models` and `cache`; analyze.py; serve.py); args.py holds the argument types and shared options,
common.py the consoles, progress lines and model loading. docs/cli.md describes the commands."""

from __future__ import annotations

import sys

from ..errors import RoutelensError
from . import analyze, check, diff, models, serve, trace
from .analyze import cmd_analyze
from .args import MAX_TOP, Parser
from .check import CHECK_PROMPTS, cmd_check
from .diff import cmd_diff
from .common import err_console, out_console, step
from .models import cmd_cache, cmd_models
from .serve import cmd_serve
from .trace import cmd_trace

__all__ = ["CHECK_PROMPTS", "COMMANDS", "MAX_TOP", "Parser", "build_parser", "cmd_analyze", "cmd_cache", "cmd_check", "cmd_diff", "cmd_models",
           "cmd_serve", "cmd_trace", "err_console", "main", "out_console", "step"]

COMMANDS = {"trace": cmd_trace, "diff": cmd_diff, "analyze": cmd_analyze, "check": cmd_check, "models": cmd_models, "cache": cmd_cache, "serve": cmd_serve}


def build_parser() -> Parser:
    parser = Parser(prog="routelens", description="Information-flow routes of language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    trace.add_parser(sub)
    diff.add_parser(sub)
    analyze.add_parser(sub)
    check.add_parser(sub)
    models.add_parsers(sub)
    serve.add_parser(sub)
    return parser


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

