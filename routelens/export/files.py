"""Writing a route graph in the format its file name asks for, and reading a graph JSON back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, RoutelensError
from ..routes.graph import SCHEMA, RouteGraph

FORMATS = {".json": "json", ".graphml": "graphml", ".svg": "svg", ".png": "png", ".html": "html", ".htm": "html"}
MEDIA_TYPES = {"json": "application/json", "graphml": "application/graphml+xml", "svg": "image/svg+xml",
               "png": "image/png", "html": "text/html; charset=utf-8"}


class GraphFileError(RoutelensError, ValueError):
    """A file that is not a route graph this version of routelens reads."""


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidArgumentError(
            f"cannot tell the format of {Path(path).name!r} from its extension; use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def render(graph: RouteGraph | dict[str, Any], fmt: str) -> bytes:
    """The graph in `fmt` (json, graphml, svg, png, html) as bytes."""
    data = graph.to_dict() if isinstance(graph, RouteGraph) else graph
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False).encode()
    if fmt == "graphml":
        from .graphml import to_graphml

        return to_graphml(data)
    if fmt in ("svg", "png"):
        from .drawing import scene_of

        scene = scene_of(data)
        if fmt == "svg":
            from .svg import to_svg

            return to_svg(scene).encode()
        from .png import to_png

        return to_png(scene)
    if fmt == "html":
        from .html import to_html

        return to_html(data).encode()
    raise InvalidArgumentError(f"unknown export format {fmt!r}; use one of {', '.join(sorted(MEDIA_TYPES))}")


def write_graph(graph: RouteGraph | dict[str, Any], path: str | Path, fmt: str | None = None) -> Path:
    """Write `graph` to `path` in the format its extension names (or `fmt`), atomically."""
    path = Path(path)
    data = render(graph, fmt or format_of(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def check_graph_dict(data: Any, where: str = "the file") -> dict[str, Any]:
    """Refuse what is not a routelens.graph/1 document, saying what it is and what to do."""
    if not isinstance(data, dict):
        raise GraphFileError(f"{where} holds JSON but not a route graph (expected an object with \"schema\": \"{SCHEMA}\")")
    schema = data.get("schema")
    if schema != SCHEMA:
        got = f"schema {schema!r}" if schema is not None else "no \"schema\" field"
        raise GraphFileError(
            f"{where} has {got}; this version of routelens reads {SCHEMA!r} graphs. "
            "Export the graph again with this version, or open it with the routelens version that wrote it."
        )
    missing = [k for k in ("model", "tokens", "target", "threshold", "nodes", "edges") if k not in data]
    if missing:
        raise GraphFileError(f"{where} says {SCHEMA!r} but lacks {', '.join(missing)}: it is damaged or cut short")
    ids = {n.get("id") for n in data["nodes"] if isinstance(n, dict)}
    dangling = [e for e in data["edges"] if not isinstance(e, dict) or e.get("source") not in ids or e.get("target") not in ids]
    if dangling:
        raise GraphFileError(f"{where} has {len(dangling)} edge(s) whose ends are not among its nodes: it is damaged")
    return data


def load_graph(path: str | Path) -> RouteGraph:
    """Read a route graph JSON written by routelens (`--out x.json`, the web app's JSON export)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GraphFileError(f"no such file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GraphFileError(f"{path.name} is not JSON ({err}); give a route graph exported as .json") from None
    return RouteGraph.from_dict(check_graph_dict(data, path.name))
