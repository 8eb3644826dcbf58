"""A route graph as one self-contained HTML file (and a notebook's inline view of it).

The page inlines the web app's standalone viewer bundle (routelens/server/static/viewer, built
from frontend/src/viewer.ts with the same drawing code as the app) and the graph JSON, so it
opens offline: hover, zoom and pan, and a threshold slider that re-prunes in the page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..errors import RoutelensError

VIEWER_DIR = Path(__file__).resolve().parents[1] / "server" / "static" / "viewer"


def _viewer_assets() -> tuple[str, str]:
    js = VIEWER_DIR / "viewer.js"
    if not js.is_file():
        raise RoutelensError(f"the viewer bundle is missing ({js}); reinstall routelens or run `npm run build` in frontend/")
    css = VIEWER_DIR / "viewer.css"
    return js.read_text(encoding="utf-8"), css.read_text(encoding="utf-8") if css.is_file() else ""


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element it sits in."""
    return text.replace("</", "<\\/")


def to_html(graph: dict[str, Any], title: str | None = None, height: int = 640) -> str:
    js, css = _viewer_assets()
    name = title or f"routelens: {graph.get('model', {}).get('name', 'route graph')}"
    # every "<" of the data as \u003c: no "</script>" or "<!--" can appear in the script element
    data = json.dumps(graph, ensure_ascii=False).replace("<", "\\u003c")
    options = json.dumps({"height": height})
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(name)}</title>"
        f"<style>html,body{{margin:0;background:#fff}}{css}</style></head><body>"
        "<div id=\"routelens-graph\"></div>"
        f"<script>{_script_safe(js)}</script>"
        f"<script>routelensViewer.mount(document.getElementById(\"routelens-graph\"), {data}, {options});</script>"
        "</body></html>\n"
    )


def notebook_html(graph: dict[str, Any], height: int = 640) -> str:
    """An iframe holding the self-contained page: scripts run in Jupyter, VS Code and Colab
    without a server or an extension, and several graphs in one notebook stay apart."""
    page = to_html(graph, height=height)
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height + 40}px;border:0" '
            'sandbox="allow-scripts allow-downloads" title="routelens route graph"></iframe>')
