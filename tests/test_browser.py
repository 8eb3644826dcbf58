"""The web app in Debian's chromium, driven by Playwright through the stable data-testid hooks.

The page runs under its Content-Security-Policy (no 'unsafe-eval'). Playwright's wait_for_function
evaluates its text with `eval` on every poll, which the policy refuses after the first one: a
predicate is therefore written as a function ("() => ..."), evaluated once and then just called."""

from __future__ import annotations

import contextlib
import json
import time
import xml.dom.minidom
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from servers import get_json, running_server
from tiny_models import save_tiny_model

# Tests wait for the app's own signals (a selector, data-hooks="sync", the URL); this bound only
# ends a hang. It is long because CI shares 2 cores with other work: a slow machine is not a failure.
WAIT_MS = 600_000

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def run_prompt(page, server: str, prompt: str = PROMPT) -> None:
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()
    refined(page)


def refined(page) -> None:
    """The route drawn first (at the threshold asked for) has been refined: the route at 0.01 is
    in the page (fetched in the background, tests/test_browser_long.py) and the hooks follow it."""
    page.wait_for_function("() => { const d = window.__routelensDebug; return d && !d.refining "
                           "&& document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }")


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
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=graph-edge]').length != {before}")
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
    page.wait_for_function("() => document.querySelector('[data-testid=token-panel]').innerText.includes('Paris')")
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
        assert graph["schema"] == "routelens.graph/2" and graph["edges"]
    elif fmt == "svg":
        doc = xml.dom.minidom.parseString(data)
        assert doc.documentElement.tagName == "svg"
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def in_sync_at(page, threshold: str) -> None:
    """The app's own signals that a threshold is applied: the URL holds it, the hooks follow it."""
    page.wait_for_function("t => new URLSearchParams(location.search).get('threshold') === t && "
                           "document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'", arg=threshold)


def test_reloading_the_url_restores_the_view(page, server):
    run_prompt(page, server)
    page.get_by_test_id("threshold-slider").fill("0.1")
    in_sync_at(page, "0.1")
    edges = sorted(page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => e.dataset.source + '>' + e.dataset.target + ':' + e.dataset.kind)"))
    url = page.url
    assert "0.1" in url
    page.goto("about:blank")
    page.goto(url)  # the URL this tab wrote itself (sessionStorage): it runs without asking
    page.locator("[data-testid=graph-edge]").first.wait_for()
    refined(page)
    assert page.get_by_test_id("link-confirm").count() == 0
    in_sync_at(page, "0.1")
    again = sorted(page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => e.dataset.source + '>' + e.dataset.target + ':' + e.dataset.kind)"))
    assert again == edges
    assert page.get_by_test_id("prompt-input").input_value() == PROMPT


# ---- a link that asks for work: the page asks before it loads or runs anything (issue 9) -------

LINK_MODEL = "tiny-linked"
LINK_PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def two_model_server(tiny_folder, tmp_path_factory):
    """A server offering two tiny models: "tiny" (its default) and another one a link can name."""
    root = tmp_path_factory.mktemp("linked")
    save_tiny_model(root / "m", seed=12)
    config = root / "config.json"
    config.write_text(json.dumps({"models": {"tiny": str(tiny_folder), LINK_MODEL: str(root / "m")}, "default_model": "tiny"}))
    with running_server("--config", str(config), ready_model="tiny") as base:
        yield base


@contextlib.contextmanager
def fresh_page(browser):
    """A new browser context: a new tab with empty sessionStorage, as a link opened from another site."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    try:
        yield pg
    finally:
        context.close()


def record_posts(page) -> list[tuple[str, dict]]:
    """Every POST to the API, as (path, JSON body), in the order the page sent them."""
    posts: list[tuple[str, dict]] = []
    page.on("request", lambda r: posts.append((urlsplit(r.url).path, r.post_data_json or {}))
            if r.method == "POST" and "/api/" in r.url else None)
    return posts


def settled_requests(page) -> None:
    """A request sent now is recorded after every request the page sent before it."""
    page.evaluate("fetch('api/health').then(r => r.json())")


def test_a_link_asks_before_it_loads_its_model_and_runs(browser, two_model_server):
    with fresh_page(browser) as page:
        posts = record_posts(page)
        page.goto(two_model_server + "/?" + urlencode({"model": LINK_MODEL, "prompt": LINK_PROMPT, "target": 2, "threshold": 0.02}))
        bar = page.get_by_test_id("link-confirm")
        bar.wait_for()
        assert LINK_PROMPT in bar.inner_text() and LINK_MODEL in bar.inner_text() and "loading it first" in bar.inner_text()
        # the controls show the link; nothing it asks for was sent
        assert page.get_by_test_id("prompt-input").input_value() == LINK_PROMPT
        assert page.get_by_test_id("model-select").input_value() == LINK_MODEL
        assert page.get_by_test_id("threshold-input").input_value() == "0.02"
        settled_requests(page)
        assert not [p for p, _ in posts if p == "/api/trace"], posts
        assert not [b for p, b in posts if p == "/api/models/load" and b.get("model") == LINK_MODEL], posts
        assert page.locator("[data-testid=graph-edge]").count() == 0
        assert "prompt=" in page.url  # the link stays in the address bar until the user chose
        # Run: the model loads, the prompt runs, the view of the link comes back (its target)
        page.get_by_test_id("link-confirm-run").click()
        page.locator("[data-testid=graph-edge]").first.wait_for()
        assert bar.count() == 0
        assert ("/api/models/load", {"model": LINK_MODEL}) in posts
        assert any(p == "/api/trace" and b.get("model") == LINK_MODEL and b.get("prompt") == LINK_PROMPT for p, b in posts)
        assert page.locator("[data-testid=prediction].active").get_attribute("data-pos") == "2"
        assert page.get_by_test_id("error-banner").count() == 0


def test_dismissing_a_link_runs_nothing_and_keeps_the_default_model(browser, two_model_server):
    long_prompt = "<b>bold</b> " + "the capital of france is " * 12
    with fresh_page(browser) as page:
        posts = record_posts(page)
        page.goto(two_model_server + "/?" + urlencode({"model": LINK_MODEL, "prompt": long_prompt}))
        bar = page.get_by_test_id("link-confirm")
        bar.wait_for()
        # the prompt is shown as text, shortened, and whole on hover
        shown = bar.get_by_test_id("link-confirm-prompt")
        assert shown.inner_text().startswith("<b>bold</b> the capital") and shown.inner_text().endswith("…")
        assert shown.get_attribute("title") == long_prompt
        assert bar.locator("b").count() == 0
        page.get_by_test_id("link-confirm-dismiss").click()
        assert bar.count() == 0
        # as a plain visit: the default model is selected and loaded
        assert page.get_by_test_id("model-select").input_value() == "tiny"
        page.locator("[data-testid=model-status].st-ready").wait_for()
        settled_requests(page)
        assert [p for p, _ in posts] == ["/api/models/load"] and posts[0][1] == {"model": "tiny"}, posts
        assert page.locator("[data-testid=graph-edge]").count() == 0
        assert "prompt=" not in page.url and LINK_MODEL not in page.url


# ---- the page's Content-Security-Policy (sent by the server, origins.py) --------------------------

CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) =>
  window.__cspViolations.push(e.effectiveDirective + ' ' + e.blockedURI + ' ' + (e.target.id || '')));
"""


def watch_csp(page) -> list[str]:
    """Record the page's CSP violations (the event, in window.__cspViolations) and the console's
    "Refused to ..." lines (returned)."""
    page.add_init_script(CSP_WATCH)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text or "Refused to" in m.text else None)
    return refused


def csp_violations(page) -> list[str]:
    """The violations so far: a known one (an inline script) is provoked and awaited first, so that
    every earlier violation event has been delivered too (which also shows that the watch works)."""
    page.evaluate("""() => { const s = document.createElement('script'); s.id = 'csp-probe';
                             s.textContent = 'window.__inlineRan = 1'; document.body.append(s); }""")
    page.wait_for_function("() => window.__cspViolations.some(v => v.includes('csp-probe'))")
    assert not page.evaluate("window.__inlineRan")
    return [v for v in page.evaluate("window.__cspViolations") if "csp-probe" not in v]


def test_the_app_works_under_its_content_security_policy(page, server, tmp_path):
    refused = watch_csp(page)
    response = page.goto(server + "/")
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, policy
    page.get_by_test_id("prompt-input").fill(PROMPT)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()
    # heatmaps drawn on canvases
    page.locator("[data-testid=graph-edge][data-kind=attn]").first.click(force=True)
    page.get_by_test_id("head-panel").locator("[data-heatmap]").nth(1).wait_for()
    # the downloads (blob: URLs; the PNG renders the SVG through a blob: image)
    for fmt in ("svg", "png", "json"):
        with page.expect_download() as info:
            page.locator(f"[data-testid=export-button][data-format={fmt}]").click()
        info.value.save_as(tmp_path / f"route.{fmt}")
    # the exported JSON opened again from a file
    page.get_by_test_id("open-file-input").set_input_files(str(tmp_path / "route.json"))
    page.get_by_test_id("file-badge").wait_for()
    assert csp_violations(page) == []
    assert [m for m in refused if "inline script" not in m] == [], refused  # but the probe's


def test_error_banner_on_bad_input(page, server):
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill("x" * 40_001)  # over max_user_string_length
    page.get_by_test_id("run-button").click()
    banner = page.get_by_test_id("error-banner")
    banner.wait_for()
    assert "characters" in banner.inner_text() or "long" in banner.inner_text()


LONG_PROMPT = ("The old river city lay north of the stone market, and every winter the garden music "
               "drifted over the paper letters on the silver window while the morning harbor bridge "
               "told its story to the mountain")


def settle(page) -> None:
    """Wait until the app has attached every hook and built its canvas layers (idle-time work)."""
    page.wait_for_function("() => window.__routelensDebug && window.__routelensDebug.ready")


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


# ---- a graph JSON opened from a file (no trace on the server) --------------------------------

def wait_ready(page, server: str) -> None:
    """The app is up and its model is loaded: nothing more is asked of the server on its own."""
    page.goto(server + "/")
    page.locator("[data-testid=model-status].st-ready").wait_for()


def test_open_file_draws_the_graph_without_the_server(page, server, smollm2, tmp_path):
    graph = smollm2.trace(PROMPT).graph().to_dict()
    path = tmp_path / "route.json"
    path.write_text(json.dumps(graph))
    wait_ready(page, server)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    page.get_by_test_id("open-file-input").set_input_files(str(path))
    page.locator("[data-testid=graph-edge]").first.wait_for()
    # drawn at the file's own threshold: every edge and node of the file
    assert edge_count(page) == len(graph["edges"])
    assert page.locator("[data-testid=graph-node]").count() == len(graph["nodes"])
    slider = page.get_by_test_id("threshold-slider")
    assert float(slider.get_attribute("min")) == pytest.approx(graph["threshold"])
    assert "route.json" in page.get_by_test_id("file-badge").inner_text()
    # hover shows numbers, the slider re-prunes locally
    edge = page.locator("[data-testid=graph-edge][data-kind=attn]").last
    edge.hover()
    tooltip = page.locator(".tooltip")
    tooltip.wait_for(state="visible")
    assert "weight" in tooltip.inner_text()
    before = edge_count(page)
    slider.fill("0.2")
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=graph-edge]').length != {before}")
    assert 0 < edge_count(page) < before
    # the inspector shows what the file holds and says that the rest needs the live model
    page.locator("[data-testid=graph-edge][data-kind=attn]").last.click()
    panel = page.get_by_test_id("head-panel")
    panel.get_by_test_id("offline-note").wait_for()
    assert "head" in panel.inner_text()
    page.locator("[data-testid=graph-node][data-kind=block]").last.click()
    page.get_by_test_id("token-panel").get_by_test_id("offline-note").wait_for()
    page.locator("[data-testid=graph-node][data-kind=ffn]").last.click()
    page.get_by_test_id("neuron-panel").get_by_test_id("offline-note").wait_for()
    settled_requests(page)  # recorded after anything the page sent before it
    requests[:] = [r for r in requests if not r.endswith("/api/health")]
    assert requests == [], requests
    assert page.get_by_test_id("error-banner").count() == 0
    # running a prompt goes back to live traces
    page.get_by_test_id("prompt-input").fill(PROMPT)
    page.get_by_test_id("run-button").click()
    page.wait_for_function("() => document.querySelector('[data-testid=prediction-list]').innerText.includes('Paris')")
    assert page.get_by_test_id("file-badge").count() == 0
    assert float(slider.get_attribute("min")) == pytest.approx(0.01)
    page.locator("[data-testid=graph-node][data-kind=block]").last.click()
    page.wait_for_function("() => document.querySelector('[data-testid=token-panel] [data-rank]')")


def test_open_file_refuses_another_schema_and_non_json(page, server, tmp_path):
    wait_ready(page, server)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": "routelens.graph/3", "nodes": [], "edges": []}))
    page.get_by_test_id("open-file-input").set_input_files(str(newer))
    banner = page.get_by_test_id("error-banner")
    banner.wait_for()
    text = banner.inner_text()
    assert "routelens.graph/3" in text and "routelens.graph/2" in text and "routelens.graph/1" in text and "newer.json" in text
    assert edge_count(page) == 0
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    page.get_by_test_id("open-file-input").set_input_files(str(broken))
    page.wait_for_function("() => document.querySelector('[data-testid=error-banner]').innerText.includes('broken.json')")
    assert "not JSON" in banner.inner_text()


# ---- the standalone viewer bundle (self-contained HTML, notebooks) ----------------------------

VIEWER_JS = Path(__file__).resolve().parents[1] / "routelens" / "server" / "static" / "viewer" / "viewer.js"


def script_safe(text: str) -> str:
    return text.replace("</", "<\\/")


def test_viewer_bundle_draws_offline_from_a_file_url(browser, smollm2, tmp_path):
    graph = smollm2.trace(PROMPT).graph().to_dict()
    graph["tokens"][0] = "</script><b>" + graph["tokens"][0]  # inlining must survive this
    data = script_safe(json.dumps(graph))
    bad = script_safe(json.dumps({**graph, "schema": "routelens.graph/3"}))
    js = script_safe(VIEWER_JS.read_text(encoding="utf-8"))
    page_html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>viewer</title></head><body>'
        '<div id="rl"></div><div id="rl2"></div><div id="bad"></div>'
        f"<script>{js}</script>"
        f'<script>routelensViewer.mount(document.getElementById("rl"), {data})</script>'
        f'<script>routelensViewer.mount(document.getElementById("rl2"), {data}, {{"height": 420}})</script>'
        f'<script>try {{ routelensViewer.mount(document.getElementById("bad"), {bad}) }} catch (e) {{ window.refused = e.message }}</script>'
        "</body></html>"
    )
    path = tmp_path / "graph.html"
    path.write_text(page_html, encoding="utf-8")
    context = browser.new_context(viewport={"width": 1200, "height": 1300})
    blocked: list[str] = []

    def only_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(path.as_uri())
        one, two = page.locator("#rl"), page.locator("#rl2")
        one.locator("[data-testid=graph-edge]").first.wait_for()
        assert one.get_by_test_id("graph").count() == 1
        assert one.locator("[data-testid=graph-edge]").count() == len(graph["edges"])
        assert two.locator("[data-testid=graph-edge]").count() == len(graph["edges"])
        nodes = one.locator("[data-testid=graph-node]")
        assert nodes.count() == len(graph["nodes"])
        kinds = set(nodes.evaluate_all("els => els.map(e => e.dataset.kind)"))
        assert kinds <= {"embed", "attn", "ffn", "block"} and "block" in kinds
        assert nodes.first.get_attribute("data-layer") is not None and nodes.first.get_attribute("data-pos") is not None
        head = one.locator(".rlv-head").inner_text()
        assert graph["model"]["name"] in head and "Paris" in head
        # hover: a tooltip with numbers
        edge = one.locator("[data-testid=graph-edge][data-kind=attn]").last
        edge.hover()
        tooltip = one.locator(".tooltip")
        tooltip.wait_for(state="visible")
        assert "attention edge" in tooltip.inner_text() and "weight" in tooltip.inner_text()
        # click: the details the file holds, in a box
        edge.click()
        one.get_by_test_id("head-panel").get_by_test_id("offline-note").wait_for()
        # zoom: the wheel scales the drawing
        box = one.get_by_test_id("graph").bounding_box()
        before_t = one.locator("g.viewport").get_attribute("transform")
        page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -300)
        page.wait_for_function("t => document.querySelector('#rl g.viewport').getAttribute('transform') !== t", arg=before_t)
        # the slider re-prunes in the page; the other viewer is untouched
        slider = one.get_by_test_id("threshold-slider")
        assert float(slider.get_attribute("min")) == pytest.approx(graph["threshold"])
        slider.fill("0.2")
        page.wait_for_function(
            f"() => document.querySelectorAll('#rl [data-testid=graph-edge]').length < {len(graph['edges'])}")
        assert 0 < one.locator("[data-testid=graph-edge]").count() < len(graph["edges"])
        assert two.locator("[data-testid=graph-edge]").count() == len(graph["edges"])
        # a graph of another schema version is refused with a message in its element
        refused = page.locator("#bad").get_by_test_id("error-banner").inner_text()
        assert "routelens.graph/3" in refused and "routelens.graph/2" in refused
        assert "routelens.graph/3" in page.evaluate("window.refused")
        assert errors == [] and blocked == []
    finally:
        context.close()


def test_cold_dense_change_paints_first_and_the_hooks_catch_up(page, server):
    """A change to a dense threshold right after a big graph appears paints the canvas at once and
    brings the data-testid hooks in line in idle time (hooksInSync); they end up exact."""
    page.goto(server + "/")
    page.get_by_test_id("model-select").wait_for()  # the page is built (the debug hook comes earlier)
    page.wait_for_function("() => !!window.__routelensDebug")
    out = page.evaluate("""async () => {
        const dbg = window.__routelensDebug;
        dbg.synth(30, 200, 0.01);
        await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
        dbg.setThreshold(0.01);
        return {inSync: dbg.hooksInSync, attr: document.querySelector('[data-testid=graph]').dataset.hooks,
                drawn: dbg.stats().edges, hooks: document.querySelectorAll('[data-testid=graph-edge]').length};
    }""")
    # thousands of hooks to create: they follow the frame instead of delaying it
    assert out["drawn"] > 5000
    assert out["inSync"] is False and out["attr"] == "pending" and out["hooks"] < out["drawn"]
    # hover during the catch-up acts on the drawn route (the strongest edge inside the view)
    attn = page.locator("[data-testid=graph-edge][data-kind=attn]")
    pick = attn.evaluate_all("""els => {
        const g = document.querySelector('[data-testid=graph]').getBoundingClientRect();
        for (let i = els.length - 1; i >= 0; i--) {
            const el = els[i], m = el.getScreenCTM(), r = el.getBoundingClientRect();
            for (let k = 1; k < el.points.numberOfItems - 1; k++) {
                const q = el.points.getItem(k), x = m.a * q.x + m.c * q.y + m.e, y = m.b * q.x + m.d * q.y + m.f;
                const inside = x > g.left + 60 && x < g.right - 20 && y > g.top + 20 && y < g.bottom - 60;
                if (inside && document.elementFromPoint(x, y) === el)
                    return {source: el.dataset.source, target: el.dataset.target, x: x - r.left, y: y - r.top};
            }
        }
        return null;
    }""")
    assert pick is not None
    # (hooks move in the DOM while others are attached: select by attributes, not by index)
    edge = page.locator(f"[data-testid=graph-edge][data-kind=attn][data-source='{pick['source']}'][data-target='{pick['target']}']")
    edge.hover(position={"x": pick["x"], "y": pick["y"]})
    page.locator(".tooltip").wait_for(state="visible")
    assert "attention edge" in page.locator(".tooltip").inner_text()
    page.wait_for_function("() => window.__routelensDebug.hooksInSync")
    assert page.get_attribute("[data-testid=graph]", "data-hooks") == "sync"
    stats = page.evaluate("window.__routelensDebug.stats()")
    edges = page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => e.dataset.kind + '|' + e.dataset.source + '|' + e.dataset.target)")
    nodes = page.locator("[data-testid=graph-node]").evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(edges) == len(set(edges)) == stats["edges"] == out["drawn"]
    assert len(nodes) == len(set(nodes)) == stats["nodes"]
    # a second change while nothing is left to attach is in sync at once
    page.evaluate("window.__routelensDebug.setThreshold(0.05)")
    assert page.evaluate("window.__routelensDebug.hooksInSync") is True
    assert edge_count(page) == page.evaluate("window.__routelensDebug.stats().edges")
    settle(page)
    assert page.evaluate("window.__routelensDebug.checkPrune()") == []
    pruned_e = page.evaluate("document.querySelectorAll('svg.graph .edge:not([data-testid])').length")
    stats = page.evaluate("window.__routelensDebug.stats()")
    assert pruned_e == stats["fetched"]["edges"] - stats["edges"]


def test_changes_during_the_catch_up_end_exact(page, server):
    """Threshold changes made while the hooks are still catching up never leave a stale count."""
    page.goto(server + "/")
    page.get_by_test_id("model-select").wait_for()  # the page is built (the debug hook comes earlier)
    page.wait_for_function("() => !!window.__routelensDebug")
    page.evaluate("""async () => {
        const dbg = window.__routelensDebug;
        dbg.synth(30, 200, 0.01);
        await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
        dbg.setThreshold(0.01);
        await new Promise(r => setTimeout(r, 120));
        dbg.setThreshold(0.015);
        await new Promise(r => setTimeout(r, 60));
        dbg.setThreshold(0.012);
    }""")
    page.wait_for_function("() => window.__routelensDebug.hooksInSync")
    stats = page.evaluate("window.__routelensDebug.stats()")
    assert stats["threshold"] == pytest.approx(0.012)
    assert edge_count(page) == stats["edges"]
    assert page.locator("[data-testid=graph-node]").count() == stats["nodes"]


# ---- a server with an access token: the web app asks for it once ---------------------------------

TOKEN = "s3cret-token-for-the-browser-test"


def test_access_token_is_asked_once_and_remembered_by_the_cookie(browser, smollm2):
    with running_server("--token", TOKEN) as base:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        refused: list[str] = []
        page.on("response", lambda r: refused.append(r.url) if r.status == 401 and "/api/login" not in r.url else None)
        watch_csp(page)  # the dialog works under the page's Content-Security-Policy
        try:
            page.goto(base + "/")
            dialog = page.get_by_test_id("token-dialog")
            dialog.wait_for()
            assert page.get_by_test_id("token-input").get_attribute("type") == "password"
            assert "access token" in dialog.inner_text()
            # a wrong token: the dialog says so and stays
            page.get_by_test_id("token-input").fill("not-the-token")
            page.get_by_test_id("token-submit").click()
            error = page.get_by_test_id("token-error")
            error.wait_for()
            assert "wrong" in error.inner_text().lower()
            assert dialog.is_visible()
            assert page.get_by_test_id("token-input").input_value() == ""  # not kept by the page
            # the right one: the dialog closes and what waited (the configuration, the model) goes on
            page.get_by_test_id("token-input").fill(TOKEN)
            page.get_by_test_id("token-submit").click()
            dialog.wait_for(state="detached")
            page.locator("[data-testid=model-select] option[value='smollm2-135m-instruct']").wait_for(state="attached")
            page.get_by_test_id("prompt-input").fill(PROMPT)
            page.get_by_test_id("run-button").click()
            page.locator("[data-testid=graph-edge]").first.wait_for()
            assert "Paris" in page.get_by_test_id("prediction-list").locator("[data-pos]").last.inner_text()
            assert page.get_by_test_id("error-banner").count() == 0
            # the page keeps no copy of the token: an HttpOnly session cookie (a random id) logs it in
            kept = page.evaluate("() => [location.href, document.cookie, JSON.stringify({...localStorage}), "
                                 "JSON.stringify({...sessionStorage}), document.documentElement.outerHTML].join(' ')")
            assert TOKEN not in kept
            # (server/access.py: "routelens_session_<port>", one per port)
            cookie = next(c for c in context.cookies() if c["name"].startswith("routelens_session"))
            assert cookie["httpOnly"] and TOKEN not in cookie["value"]

            # reloading the page does not ask again: the cookie answers
            refused.clear()
            page.reload()
            page.locator("[data-testid=graph-edge]").first.wait_for()
            refined(page)  # no request of the page's own is in flight when the cookie goes
            assert refused == [] and page.get_by_test_id("token-dialog").count() == 0

            # without the cookie (say, it expired), calls refused together (a route to another
            # position and a run with another norm) open one dialog, and all go on after the login
            context.clear_cookies()
            page.evaluate("""() => {
                document.querySelector('[data-testid=prediction][data-pos="0"]').click();
                const norm = document.querySelector('[data-testid=norm-select]');
                norm.value = 'l2';
                norm.dispatchEvent(new Event('change'));
            }""")
            dialog.wait_for()
            deadline = time.monotonic() + WAIT_MS / 1000
            while len(refused) < 2 and time.monotonic() < deadline:  # the two refusals, as they arrive
                page.wait_for_timeout(50)
            assert any("/graph" in u for u in refused) and any(u.endswith("/api/trace") for u in refused), refused
            assert page.get_by_test_id("token-dialog").count() == 1
            page.get_by_test_id("token-input").fill(TOKEN)
            page.get_by_test_id("token-input").press("Enter")
            dialog.wait_for(state="detached")
            page.wait_for_function("() => document.querySelector('.route-info')?.textContent.includes('(position 0)') "
                                   "&& document.querySelector('.route-info').textContent.includes('L2')")
            page.locator("[data-testid=graph-edge]").first.wait_for()
            assert page.get_by_test_id("token-dialog").count() == 0
            assert page.get_by_test_id("error-banner").count() == 0
            assert csp_violations(page) == []
        finally:
            context.close()


# ---- issue 10: the bias share is shown; the Import button reads prompt files as the server does ----
@pytest.fixture(scope="module")
def gpt2_server(tmp_path_factory):
    """A tiny GPT-2 (it has an attention output bias b_O) from a local folder, and a dataset folder
    holding a prompt file saved with a byte-order mark and CRLF line ends."""
    from test_bias_share import BOM_CRLF
    from tiny_models import save_tiny_gpt2

    root = tmp_path_factory.mktemp("gpt2")
    save_tiny_gpt2(root / "m")
    data = root / "data"
    data.mkdir()
    (data / "bom-crlf.txt").write_bytes(BOM_CRLF.encode("utf-8"))
    config = root / "config.json"
    config.write_text(json.dumps({"models": {"tiny-gpt2": str(root / "m")}, "default_model": "tiny-gpt2",
                                  "dataset_dir": str(data)}))
    with running_server("--config", str(config), ready_model="tiny-gpt2") as base:
        yield base, data / "bom-crlf.txt"


def test_node_panel_and_hover_show_the_bias_share(browser, gpt2_server):
    base, _ = gpt2_server
    with fresh_page(browser) as page:
        run_prompt(page, base, "the capital of france is")
        top = page.locator("[data-testid=graph-node][data-kind=attn]").evaluate_all(
            "els => Math.max(...els.map(e => +e.dataset.layer))")
        last = page.locator(f"[data-testid=graph-node][data-kind=attn][data-layer='{top}']").evaluate_all(
            "els => Math.max(...els.map(e => +e.dataset.pos))")
        node = page.locator(f"[data-testid=graph-node][data-kind=attn][data-layer='{top}'][data-pos='{last}']")
        node.hover()
        tip = page.get_by_test_id("tt-bias")
        tip.wait_for()
        assert "bias" in tip.inner_text()
        node.click()
        share = page.get_by_test_id("token-panel").get_by_test_id("bias-share")
        share.wait_for()
        bias = float(share.get_attribute("data-bias"))
        assert 0 < bias < 1 and "b_O" in share.inner_text()
        # what the panel lists adds up: drawn incoming edges + bias + the lighter edges = 1
        drawn = sum(float(t) for t in page.locator("[data-testid=token-panel] .conn-section ul.conns").first
                    .locator("li.conn .conn-w").all_inner_texts())
        below = page.get_by_test_id("below-threshold")
        rest = float(below.inner_text().split()[0]) if below.count() else 0.0
        assert abs(drawn + bias + rest - 1) <= 0.003, (drawn, bias, rest)


def test_import_button_reads_a_prompt_file_as_the_server_does(browser, gpt2_server):
    from test_bias_share import BOM_CRLF_PROMPTS

    base, file = gpt2_server
    served = get_json(f"{base}/api/prompts?file=bom-crlf.txt")["prompts"]
    assert served == BOM_CRLF_PROMPTS
    with fresh_page(browser) as page:
        page.goto(base + "/")
        page.locator("[data-testid=model-status].st-ready").wait_for()
        page.get_by_test_id("import-input").set_input_files(str(file))
        mine = page.locator("[data-testid=prompt-select] optgroup[label='Your prompts'] option")
        mine.first.wait_for(state="attached")
        assert mine.evaluate_all("els => els.map(e => e.value)") == served
        assert page.get_by_test_id("error-banner").count() == 0


def test_pieces_of_characters_have_distinct_faithful_labels(page, server):
    """"🍕 日本の首都は" splits characters into byte pieces on smollm2: the prediction strip and the
    graph's axis show each piece as its bytes ("<F0 9F>"), never as U+FFFD, and one label per byte
    sequence; the chips' labels rebuild the prompt (byte groups left out), their bytes on hover."""
    from routelens.models.tokens import rebuild_text

    prompt = "🍕 日本の首都は"
    run_prompt(page, server, prompt)
    chips = page.get_by_test_id("prediction-list").locator("[data-testid=prediction]")
    rows = chips.evaluate_all("els => els.map(e => [e.dataset.token, e.dataset.bytes, e.title, e.innerText])")
    assert len(rows) == 15
    labels, hexes = [r[0] for r in rows], [r[1] for r in rows]
    assert labels[:4] == ["<F0 9F>", "<8D>", "🍕", " <E6>"]
    assert hexes[:3] == ["f09f", "8d", "95"]
    assert all("\ufffd" not in label and "\ufffd" not in shown for label, _, _, shown in rows)
    assert len({(label, raw) for label, raw in zip(labels, hexes)}) == len(set(hexes)) == len(set(labels))
    assert rebuild_text(labels) == prompt
    assert "bytes F0 9F" in rows[0][2] and "bytes 95" in rows[2][2]  # the raw bytes on hover
    axis = page.locator("g.xlabel[data-pos]:not([display])").evaluate_all(
        "els => els.map(e => [+e.dataset.pos, e.dataset.token, e.querySelector('.xl-tok').textContent, "
        "e.querySelector('title').textContent])")
    assert len(axis) >= 5
    by_label: dict[str, str] = {}
    for pos, label, shown, title in axis:
        assert label == labels[pos] and "\ufffd" not in shown and "\ufffd" not in title
        assert by_label.setdefault(shown, hexes[pos]) == hexes[pos], f"{shown!r} shown for two byte sequences"
        assert "bytes " + " ".join(hexes[pos][k:k + 2] for k in range(0, len(hexes[pos]), 2)).upper() in title
