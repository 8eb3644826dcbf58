"""Writing a route graph in the format its file name asks for, and reading a graph JSON back."""

from __future__ import annotations

import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

from ..errors import GraphFileError, InvalidArgumentError, OutputFileError
from .schema import validate_graph_dict

FORMATS = {".json": "json", ".graphml": "graphml", ".svg": "svg", ".png": "png", ".html": "html", ".htm": "html"}
MEDIA_TYPES = {"json": "application/json", "graphml": "application/graphml+xml", "svg": "image/svg+xml",
               "png": "image/png", "html": "text/html; charset=utf-8"}


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidArgumentError(
            f"cannot tell the format of {Path(path).name!r} from its extension; use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def render(graph: Any, fmt: str) -> bytes:
    """The graph (a RouteGraph, or its dictionary) in `fmt` (json, graphml, svg, png, html) as bytes."""
    data = graph if isinstance(graph, dict) else graph.to_dict()
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


def _why(err: OSError) -> str:
    return err.strerror or str(err)


def check_output_path(path: str | Path) -> Path:
    """Refuse, before any work, a path a graph cannot be written to: an unknown extension, a
    folder, a place under a file, a folder this process may not write. The folders missing on
    the way are created by write_graph."""
    path = Path(path).expanduser()
    format_of(path)
    if path.is_dir():
        raise OutputFileError(f"{path} is a folder; give a file name inside it, e.g. {path / ('route' + path.suffix)}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the first folder that exists on the way
        folder = folder.parent
    if not folder.is_dir():
        raise OutputFileError(f"cannot write {path}: {folder} is a file, not a folder; pick another place")
    probe = folder / f".routelens-probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # what really happens, not os.access
    try:
        with open(probe, "xb"):
            pass
    except OSError as err:
        raise OutputFileError(f"cannot write {path}: the folder {folder} is not writable ({_why(err)}); "
                              "pick another place") from None
    try:
        probe.unlink()
    except OSError:
        pass
    return path


def write_graph(graph: Any, path: str | Path, fmt: str | None = None) -> Path:
    """Write `graph` to `path` in the format its extension names (or `fmt`), atomically: through a
    temporary file beside it that is removed whatever happens. A path that cannot be written
    raises OutputFileError."""
    path = Path(path).expanduser()
    fmt = fmt or format_of(path)
    if path.is_dir():
        check_output_path(path)  # says it is a folder
    return write_bytes_atomically(path, render(graph, fmt))


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """`data` into `path` through a temporary file beside it (removed whatever happens); a path
    that cannot be written raises OutputFileError."""
    path = Path(path).expanduser()
    if not path.name:
        raise OutputFileError(f"{str(path)!r} names no file; give a file name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # writers in parallel never share one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as err:  # an interrupt too: the temporary file never stays
        try:
            tmp.unlink()
        except OSError:
            pass
        if not isinstance(err, OSError):
            raise
        if err.errno == errno.EISDIR or path.is_dir():
            raise OutputFileError(f"{path} is a folder; give a file name inside it") from None
        raise OutputFileError(f"cannot write {path}: {_why(err)}; pick another place") from None
    return path


def check_graph_dict(data: Any, where: str = "the file") -> dict[str, Any]:
    """Refuse what is not a routelens.graph/1 document, saying what is wrong and what to do
    (export/schema.py validate_graph_dict)."""
    return validate_graph_dict(data, where)


def read_graph_dict(path: str | Path) -> dict[str, Any]:
    """Read a route graph JSON written by routelens (`--out x.json`, the web app's JSON export)
    as its dictionary (routes/graph.py `load_graph` makes a RouteGraph of it).

    The content is checked (node and edge kinds, edge ends, positions and layers, finite
    weights): a malformed file raises GraphFileError naming the offending node or edge."""
    path = Path(path).expanduser()
    if not path.is_file():
        if path.is_dir():
            raise GraphFileError(f"{path} is a folder, not a file; give a route graph exported as .json")
        raise GraphFileError(f"no such file: {path}; check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GraphFileError(f"{path.name} is not JSON ({err}); give a route graph exported as .json") from None
    except RecursionError:
        raise GraphFileError(f"{path.name} nests too deeply to be a route graph; give a route graph exported as .json") from None
    except OSError as err:
        raise GraphFileError(f"cannot read {path}: {_why(err)}") from None
    return check_graph_dict(data, path.name)
