"""`routelens models` (the embedded catalog, the covered architectures) and `routelens cache` (the
persistent trace store)."""

from __future__ import annotations

import argparse
import os

from rich.table import Table

from .common import out_console


def add_parsers(sub) -> None:
    p = sub.add_parser("models", help="list the embedded catalog and what is cached locally")
    p.add_argument("--architectures", action="store_true",
                   help="list the transformers model types routelens decomposes exactly, by family")

    p = sub.add_parser("cache", help="the persistent trace store: ls, info, clear")
    p.add_argument("action", choices=["ls", "info", "clear"], help="ls: list stored traces; info: size and place; clear: remove all")


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import catalog

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
    from ..models.adapters import families, supported_model_types

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

    from ..store import default_store
    from ..store.store import STORE_ENV, human

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
