"""The self-contained HTML export and the notebook view: the page inlines the standalone viewer
and the graph, opens offline in headless chromium with the hooks of product.md, and nothing in
the graph can break out of its script."""

from __future__ import annotations

import html

import pytest

import routelens as rl
import tiny_models
from routelens.export import render, write_graph
from routelens.export.html import to_html
from servers import CHROMIUM_ARGS, chromium_path, tiny_app
from tiny_models import PROMPT, TinyTokenizer


@pytest.fixture(scope="module")
def graph():
    model = rl.wrap(tiny_models.llama(), TinyTokenizer(), name="tiny-llama")
    g = model.trace(PROMPT, store=False).graph(threshold=0.01)
    assert len(g.edges) > 40
    return g


def test_notebook_display_is_the_self_contained_page(graph):
    shown = graph._repr_html_()
    assert shown.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts' in shown
    page = html.unescape(shown.split('srcdoc="', 1)[1].split('" style=', 1)[0])
    assert page == to_html(graph.to_dict())
    assert "routelensViewer.mount(" in page and "<script src=" not in page and "<link" not in page


def test_html_cannot_be_broken_out_of_by_a_token(graph):
    g = graph.to_dict()
    g["tokens"] = ["</script><script>alert(1)</script>", "<!--<script>"] + g["tokens"][2:]
    page = to_html(g)
    assert page.count("</script>") == 2  # the viewer's and the mount call's, nothing from the data
    assert page.count("<!--") == 0 and page.count("<script") == 2
    assert "\\u003c/script>\\u003cscript>alert(1)\\u003c/script>" in page


def test_api_exports_html(tmp_path):
    with tiny_app(tmp_path / "m", seed=9, store=False) as (client, tid, graph):
        r = client.get(f"/api/trace/{tid}/export", params={"format": "html", "threshold": 0.01})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.content == render(rl.routes.graph.RouteGraph.from_dict(graph), "html")
        assert r.content.startswith(b"<!doctype html>")


@pytest.mark.slow
def test_html_opens_offline_in_chromium_with_the_hooks(graph, tmp_path):
    from playwright.sync_api import sync_playwright

    path = write_graph(graph, tmp_path / "route.html")
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else (requests.append(route.request.url), route.abort()))
        page = context.new_page()
        page.set_default_timeout(600_000)  # a bound on a hang, not on speed: CI shares its cores
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.get_by_test_id("graph").wait_for()
        page.wait_for_function(f"document.querySelectorAll('[data-testid=graph-edge]').length === {len(graph.edges)}")
        for kind in ("attn", "resid", "ffn"):
            assert page.locator(f"[data-testid=graph-edge][data-kind={kind}]").count() == graph.edge_count(kind)
        assert page.locator("[data-testid=graph-node]").count() == len(graph.nodes)
        block = page.locator("[data-testid=graph-node][data-kind=block]")
        assert block.count() > 0 and block.first.get_attribute("data-layer") is not None
        # hover: the tooltip shows the edge's numbers
        page.locator("[data-testid=graph-edge][data-kind=attn]").last.hover()
        tooltip = page.locator("[role=tooltip]")
        tooltip.wait_for(state="visible")
        assert "weight" in tooltip.inner_text()
        # the threshold slider re-prunes in the page
        page.get_by_test_id("threshold-slider").fill("0.1")
        page.wait_for_function(f"document.querySelectorAll('[data-testid=graph-edge]').length < {len(graph.edges)}")
        assert page.locator("[data-testid=graph-edge]").count() > 0
        browser.close()
    assert errors == [] and requests == []
