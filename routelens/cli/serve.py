"""`routelens serve`: the web app, with a log line per model-load stage."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import args as a
from .common import store_of

STAGE_TEXT = {
    "downloading": "downloading (first time only)",
    "converting": "converting to safetensors (first time only, about a minute)",
    "loading": "loading into memory",
}


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the web app")
    p.add_argument("--config", default=None, help="a JSON configuration (the LLM Transparency Tool's format works)")
    p.add_argument("--model", default=None, type=a.model_name, help="the model to load at start (default: the configuration's, else the catalog default)")
    p.add_argument("--host", default="127.0.0.1", type=a.host, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=a.port, default=8000, help="port to listen on, 1 to 65535 (default 8000)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", default=None,
                       help="access token the API requires; needed to bind beyond 127.0.0.1. A token on the command line "
                            "is visible to other users of this machine in `ps`: prefer --token-file or $ROUTELENS_TOKEN")
    token.add_argument("--token-file", default=None, type=Path, metavar="FILE",
                       help="read the access token from the first line of FILE (not visible in `ps`)")
    p.add_argument("--insecure", action="store_true", help="allow binding beyond 127.0.0.1 without an access token")
    p.add_argument("--analysis", action="append", default=[], type=Path, metavar="DIR",
                   help="a finished dataset analysis (routelens analyze --out DIR) for the web app's dataset view; "
                        "repeat for more")
    a.add_store_option(p)


def say(line: str) -> None:
    """A server log line: whole (never wrapped, a URL stays clickable) and written at once."""
    print(line, flush=True)


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


def add_analyses(config, folders: list[Path]) -> None:
    """`--analysis DIR`: each must hold a finished analysis (said now, not at the first request)."""
    from ..analysis.report import load_analysis
    from ..errors import RoutelensError

    if folders and config.demo_mode:
        raise RoutelensError("a demo serves no dataset analyses: leave out --analysis, or turn demo_mode off")
    for folder in folders:
        load_analysis(folder)
        config.analysis_dirs.append(folder.expanduser().resolve())


def cmd_serve(args: argparse.Namespace) -> int:
    from ..server.access import check_bind, read_token_file, token_from
    from ..server.config import load_config
    from ..server.http import bind_port, serve

    config = load_config(args.config, args.model)
    add_analyses(config, args.analysis)
    option = args.token if args.token else read_token_file(args.token_file) if args.token_file else None
    token = token_from(option or config.access_token)
    check_bind(args.host, token, args.insecure)  # before any model loads
    config.access_token = token
    config.bind_host = args.host  # its name may be the Host of requests (origins.py)
    if args.no_store:
        config.store = False
    else:
        store_of(args)  # an unusable $ROUTELENS_STORE is said now, not at the first request
    sockets = bind_port(args.host, args.port)  # before "serving on": a busy port is one clear line
    try:
        from ..server.app import create_app

        url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
        app = create_app(config, report=_load_reporter(url, config.default_model))
        say(f"routelens: serving on {url}" + (" (access token required)" if token else "")
            + f"; loading {config.default_model}")
        serve(app, config, args.host, args.port, sockets)
    finally:
        for sock in sockets:
            sock.close()
    return 0
