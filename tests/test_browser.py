"""The web app in Debian's chromium, driven by Playwright through the stable data-testid hooks."""

from __future__ import annotations

import json
import xml.dom.minidom

import pytest

from servers import CHROMIUM_ARGS, chromium_path, running_server

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(smollm2):  # the fixture converts the catalog model before the server needs it
    with running_server() as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    context.close()


def run_prompt(page, server: str, prompt: str = PROMPT) -> None:
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()


def edge_count(page) -> int:
    return page.locator("[data-testid=graph-edge]").count()


def test_predictions_show_paris_first(page, server):
    run_prompt(page, server)
    predictions = page.get_by_test_id("prediction-list")
    last = predictions.locator("[data-pos]").last
    assert "Paris" in last.inner_text()
    assert page.locator("[data-testid=graph-node]").count() > 10


def test_threshold_slider_redraws_without_a_request(page, server):
    run_prompt(page, server)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    before = edge_count(page)
    slider = page.get_by_test_id("threshold-slider")
    slider.fill("0.2")
    page.wait_for_function(f"document.querySelectorAll('[data-testid=graph-edge]').length != {before}")
    after = edge_count(page)
    assert after < before
    assert requests == []


def test_last_node_shows_paris_in_token_panel(page, server):
    run_prompt(page, server)
    n = page.evaluate("document.querySelectorAll('[data-testid=graph-node][data-kind=block]').length")
    assert n > 0
    layers = page.locator("[data-testid=graph-node][data-kind=block]").evaluate_all(
        "els => Math.max(...els.map(e => +e.dataset.layer))")
    positions = page.locator("[data-testid=graph-node][data-kind=block]").evaluate_all(
        "els => Math.max(...els.map(e => +e.dataset.pos))")
    node = page.locator(f"[data-testid=graph-node][data-kind=block][data-layer='{layers}'][data-pos='{positions}']")
    node.click()
    panel = page.get_by_test_id("token-panel")
    panel.wait_for()
    page.wait_for_function("document.querySelector('[data-testid=token-panel]').innerText.includes('Paris')")
    first_token = panel.locator("[data-rank]").first
    assert "Paris" in first_token.inner_text()


def test_attention_edge_opens_head_panel_with_two_heatmaps(page, server):
    run_prompt(page, server)
    page.locator("[data-testid=graph-edge][data-kind=attn]").first.click(force=True)
    panel = page.get_by_test_id("head-panel")
    panel.wait_for()
    panel.locator("[data-heatmap]").nth(1).wait_for()
    assert panel.locator("[data-heatmap]").count() == 2


def test_ffn_node_lists_neurons_with_signed_activations(page, server):
    run_prompt(page, server)
    page.locator("[data-testid=graph-node][data-kind=ffn]").first.click()
    panel = page.get_by_test_id("neuron-panel")
    panel.locator("[data-activation]").first.wait_for()
    values = panel.locator("[data-activation]").evaluate_all("els => els.map(e => +e.dataset.activation)")
    assert len(values) >= 5
    shown = panel.locator("[data-activation]").first.inner_text()
    assert any(ch.isdigit() for ch in shown)
    assert any(v < 0 for v in values) and any(v > 0 for v in values)


@pytest.mark.parametrize("fmt", ["json", "svg", "png"])
def test_exports_download_the_right_type(page, server, fmt, tmp_path):
    run_prompt(page, server)
    with page.expect_download() as info:
        page.locator(f"[data-testid=export-button][data-format={fmt}]").click()
    path = tmp_path / f"graph.{fmt}"
    info.value.save_as(path)
    data = path.read_bytes()
    assert len(data) > 100
    if fmt == "json":
        graph = json.loads(data)
        assert graph["schema"] == "routelens.graph/1" and graph["edges"]
    elif fmt == "svg":
        doc = xml.dom.minidom.parseString(data)
        assert doc.documentElement.tagName == "svg"
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_reloading_the_url_restores_the_view(page, server):
    run_prompt(page, server)
    page.get_by_test_id("threshold-slider").fill("0.1")
    page.wait_for_timeout(300)
    edges = sorted(page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => e.dataset.source + '>' + e.dataset.target + ':' + e.dataset.kind)"))
    url = page.url
    assert "0.1" in url
    page.goto("about:blank")
    page.goto(url)
    page.locator("[data-testid=graph-edge]").first.wait_for()
    page.wait_for_timeout(300)
    again = sorted(page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => e.dataset.source + '>' + e.dataset.target + ':' + e.dataset.kind)"))
    assert again == edges
    assert page.get_by_test_id("prompt-input").input_value() == PROMPT


def test_error_banner_on_bad_input(page, server):
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill("x" * 5000)
    page.get_by_test_id("run-button").click()
    banner = page.get_by_test_id("error-banner")
    banner.wait_for()
    assert "characters" in banner.inner_text() or "long" in banner.inner_text()


LONG_PROMPT = ("The old river city lay north of the stone market, and every winter the garden music "
               "drifted over the paper letters on the silver window while the morning harbor bridge "
               "told its story to the mountain")


def settle(page) -> None:
    """Wait until the app has attached every hook and built its canvas layers (idle-time work)."""
    page.wait_for_function("window.__routelensDebug && window.__routelensDebug.ready")


def test_pruned_edges_and_nodes_do_not_match_the_hooks(page, server):
    run_prompt(page, server, LONG_PROMPT)
    settle(page)
    assert page.evaluate("window.__routelensDebug.checkPrune()") == []
    counts = []
    for tau in (0.01, 0.05, 0.2, 0.01):
        page.evaluate("t => window.__routelensDebug.setThreshold(t)", tau)
        stats = page.evaluate("window.__routelensDebug.stats()")
        edges = page.locator("[data-testid=graph-edge]").evaluate_all(
            "els => els.map(e => e.dataset.kind + '|' + e.dataset.source + '|' + e.dataset.target)")
        nodes = page.locator("[data-testid=graph-node]").evaluate_all("els => els.map(e => e.dataset.id)")
        # exactly one hook per drawn edge and node
        assert len(edges) == len(set(edges)) == stats["edges"]
        assert len(nodes) == len(set(nodes)) == stats["nodes"]
        # the pruned ones stay in the DOM (so that a redraw attaches nothing), without the hook
        pruned_e = page.evaluate("document.querySelectorAll('svg.graph .edge:not([data-testid])').length")
        pruned_n = page.evaluate("document.querySelectorAll('svg.graph .node:not([data-testid])').length")
        assert pruned_e == stats["fetched"]["edges"] - stats["edges"]
        assert pruned_n == stats["fetched"]["nodes"] - stats["nodes"]
        counts.append(stats["edges"])
    assert counts[0] > counts[1] > counts[2] and counts[3] == counts[0]


def test_hover_and_clicks_work_on_a_dense_graph(page, server):
    run_prompt(page, server, LONG_PROMPT)
    page.evaluate("window.__routelensDebug.setThreshold(0.01)")
    settle(page)
    assert edge_count(page) > 1000
    # the strongest attention edge lies on top of the hooks: hover shows its numbers, a click
    # (hit-tested at its centre, no force) opens the head panel
    edge = page.locator("[data-testid=graph-edge][data-kind=attn]").last
    edge.hover()
    tooltip = page.locator(".tooltip")
    tooltip.wait_for(state="visible")
    assert "attention edge" in tooltip.inner_text()
    edge.click()
    page.get_by_test_id("head-panel").wait_for()
    page.locator("[data-testid=graph-node][data-kind=ffn]").last.click()
    page.get_by_test_id("neuron-panel").locator("[data-activation]").first.wait_for()
    # back to a high threshold: the drawn hooks stay clickable over the pruned ones
    page.evaluate("window.__routelensDebug.setThreshold(0.1)")
    page.locator("[data-testid=graph-node][data-kind=block]").last.click()
    page.get_by_test_id("token-panel").wait_for()
