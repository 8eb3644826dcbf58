"""Argument types and the options several commands share. Every value is checked while the command
line is read, before a model loads; a mistake is one line on stderr (exit status 2)."""

from __future__ import annotations

import argparse
import math

from ..errors import RoutelensError

MAX_TOP = 100  # predictions `trace --top` prints: more is a vocabulary dump, not a table


class Parser(argparse.ArgumentParser):
    """argparse with its mistakes said in one line on stderr (exit status 2), like routelens's own."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"routelens: error: {message} (see `{self.prog} --help`)\n")


def model_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("no model name given: use a catalog name (see `routelens models`), a hub id or a path")
    return value


def prompt(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("the prompt is empty: give some text to trace")
    return value


def whole(low: int, high: int, what: str = ""):
    """An argument type: a whole number from low to high."""

    def check(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = None
        if n is None or not low <= n <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}{what}, not {value!r}")
        return n

    check.__name__ = "whole number"
    return check


top = whole(1, MAX_TOP)
port = whole(1, 65535)


def threshold(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {value!r}")
    return x


def target(value: str) -> int | str:
    if value.strip() == "all":
        return "all"
    return position(value, " or 'all'")


def position(value: str, more: str = "") -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer position (e.g. -1, the last){more}, not {value!r}") from None


def host(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"must be an address or name of this machine (e.g. 127.0.0.1), not {value!r}")
    return value


def checked_by(check_name: str):
    """An argument type that runs a check of routelens.models.loading (imported only when used)."""

    def check(value: str) -> str:
        from ..models import loading

        try:
            return getattr(loading, check_name)(value)
        except RoutelensError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    check.__name__ = check_name
    return check


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=model_name,
                   help="catalog name (see `routelens models`), Hugging Face hub id, model folder or .gguf file")
    p.add_argument("--device", default=None, type=checked_by("check_device"),
                   help="cpu, cuda, cuda:1 or mps (default: the best available)")
    p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="compute dtype (importances are always fp32)")
    p.add_argument("--revision", default=None, type=checked_by("check_revision"), help="hub revision (branch, tag or commit)")
    p.add_argument("--device-map", default=None, type=checked_by("check_device_map"),
                   help="passed to transformers: auto, balanced, balanced_low_0, sequential or a device (auto spreads a "
                        "big model over GPUs)")
    add_store_option(p)


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-store", action="store_true", help="neither read nor write the persistent trace store (or set ROUTELENS_STORE=off)")


def add_tracing_options(p: argparse.ArgumentParser) -> None:
    """How a prompt is traced and pruned: the options of `trace` that `diff` shares."""
    p.add_argument("--threshold", type=threshold, default=0.04,
                   help="keep edges whose importance is above this, from 0 to 1 (default 0.04)")
    p.add_argument("--norm", choices=["l1", "l2"], default="l1", help="proximity norm (default l1, the paper's)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
