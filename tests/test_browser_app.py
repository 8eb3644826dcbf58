"""The web app's views in Debian's chromium (Playwright, as tests/test_browser.py): the
all-positions view against the API's single routes, one layer numbering in the panels, and the
view store written to the URL and restored by a reload.

Tests wait for the app's own signals (selectors, data-hooks="sync", window.__routelensDebug), never
a fixed time; predicates are functions because of the page's Content-Security-Policy."""

from __future__ import annotations

import json

import pytest

from servers import page_api as api

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def settled(page, target: str) -> None:
    """The route to `target` ("all" or a position) was refined (the finer route fetched in the
    background and drawn), and the data-testid hooks follow the drawing."""
    page.wait_for_function("""t => { const d = window.__routelensDebug;
        return d && !d.refining && d.fetches.some(f => String(f.target) === t && f.refine)
            && String(new URLSearchParams(location.search).get('target')) === t
            && document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }""", arg=target)


def run_prompt(page, server: str) -> int:
    """Run PROMPT; the number of its tokens once the route to the last one is refined."""
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(PROMPT)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()
    n = page.locator("[data-testid=prediction]").count()
    settled(page, str(n - 1))
    return n


def drawn(page) -> tuple[set[str], set[tuple[str, str, str]]]:
    """The drawn route as its hooks say: node ids, and edges as (source, target, kind)."""
    nodes = page.locator("[data-testid=graph-node]").evaluate_all("els => els.map(e => e.dataset.id)")
    edges = page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => [e.dataset.source, e.dataset.target, e.dataset.kind])")
    return set(nodes), {tuple(e) for e in edges}


def route(graph: dict) -> tuple[set[str], set[tuple[str, str, str]]]:
    return {n["id"] for n in graph["nodes"]}, {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}


def panel_of(page, testid: str) -> dict:
    """The open panel's header and where it says it is."""
    panel = page.get_by_test_id(testid)
    panel.wait_for()
    return {"testid": testid, "kicker": panel.locator(".panel-kicker").inner_text(),
            "title": panel.locator(".panel-title").inner_text(), "layer": panel.get_attribute("data-layer")}


def open_node(page, node_id: str) -> dict:
    page.locator(f"[data-testid=graph-node][data-id='{node_id}']").click()
    testid = "neuron-panel" if node_id.startswith("f:") else "token-panel"
    page.wait_for_function("([t, id]) => { const p = document.querySelector(`[data-testid=${t}]`); "
                           "return p && p.querySelector('.panel-meta') && p.querySelector('.panel-meta').textContent.includes(id); }",
                           arg=[testid, node_id])
    return panel_of(page, testid)


def open_edge(page, source: str, target: str) -> dict:
    # dispatched on the edge's own hook: a click at its centre may land on a crossing edge
    page.locator(f"[data-testid=graph-edge][data-kind=attn][data-source='{source}'][data-target='{target}']").dispatch_event("click")
    page.wait_for_function("k => new URLSearchParams(location.search).get('sel') === k", arg=f"edge:attn|{source}|{target}")
    return panel_of(page, "head-panel")


def threshold_shown(page) -> str:
    return page.get_by_test_id("threshold-input").input_value()


def test_all_positions_view_is_the_union_of_the_single_routes(page, server, tmp_path):
    n_tokens = run_prompt(page, server)
    last_nodes, _ = drawn(page)
    page.get_by_test_id("prediction-all").click()
    settled(page, "all")
    all_chip = page.get_by_test_id("prediction-all")
    assert all_chip.get_attribute("aria-selected") == "true"
    assert page.locator("[data-testid=prediction][aria-selected=true]").count() == 0
    assert "every position" in page.locator(".route-info").inner_text()

    tau = threshold_shown(page)
    trace = page.evaluate("window.__routelensDebug.traceId")
    singles = [route(api(page, f"api/trace/{trace}/graph?target={p}&threshold={tau}")) for p in range(n_tokens)]
    union_nodes = set().union(*(r[0] for r in singles))
    union_edges = set().union(*(r[1] for r in singles))
    nodes, edges = drawn(page)
    assert nodes == union_nodes
    assert edges == union_edges
    # the union is more than the route to the last position: the view shows something new
    assert len(nodes) > len(last_nodes)
    assert {n.split(":")[2] for n in nodes if n.startswith("x:")} == {str(p) for p in range(n_tokens)}

    # the exports say what they hold: file names "posall", the SVG's title "every position"
    with page.expect_download() as info:
        page.locator("[data-testid=export-button][data-format=svg]").click()
    assert "_posall_" in info.value.suggested_filename
    svg = tmp_path / "all.svg"
    info.value.save_as(svg)
    assert "route to every position" in svg.read_text()
    with page.expect_download() as info:
        page.locator("[data-testid=export-button][data-format=json]").click()
    assert "_posall_" in info.value.suggested_filename
    exported = tmp_path / "all.json"
    info.value.save_as(exported)
    target = json.loads(exported.read_text())["target"]
    assert target["pos"] is None and target["positions"] == list(range(n_tokens))

    # a node and an edge of the route to an earlier position open the same panel as in its own view
    p = next(p for p in range(n_tokens - 1) if any(e[2] == "attn" for e in singles[p][1]))
    block = sorted(x for x in singles[p][0] if x.startswith("x:") and not x.startswith("x:0:"))[0]
    ffn = sorted(x for x in singles[p][0] if x.startswith("f:"))[0]
    attn = sorted(e for e in singles[p][1] if e[2] == "attn")[0]
    in_all = [open_node(page, block), open_node(page, ffn), open_edge(page, attn[0], attn[1])]
    assert [x["testid"] for x in in_all] == ["token-panel", "neuron-panel", "head-panel"]

    # a reload of the all view's URL (the one this tab wrote last: no confirmation) brings it back
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    settled(page, "all")
    assert page.get_by_test_id("link-confirm").count() == 0
    assert page.get_by_test_id("prediction-all").get_attribute("aria-selected") == "true"
    assert threshold_shown(page) == tau
    assert drawn(page) == (union_nodes, union_edges)
    assert panel_of(page, "head-panel") == in_all[2]

    page.locator(f"[data-testid=prediction][data-pos='{p}']").click()
    settled(page, str(p))
    assert threshold_shown(page) == tau
    in_single = [open_node(page, block), open_node(page, ffn), open_edge(page, attn[0], attn[1])]
    assert in_all == in_single

    # ← / → from the all view: the last / first position
    page.get_by_test_id("prediction-all").click()
    settled(page, "all")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("ArrowLeft")
    settled(page, str(n_tokens - 1))
    page.get_by_test_id("prediction-all").click()
    settled(page, "all")
    page.keyboard.press("ArrowRight")
    settled(page, "0")

    # the exported JSON (no pos, every position) opened as a file is drawn as the all view
    page.get_by_test_id("open-file-input").set_input_files(str(exported))
    page.get_by_test_id("file-badge").wait_for()
    page.wait_for_function("() => document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'")
    assert page.get_by_test_id("prediction-all").get_attribute("aria-selected") == "true"
    assert "every position" in page.locator(".route-info").inner_text()
    assert drawn(page) == (union_nodes, union_edges)


def test_panels_name_layers_as_the_graph_does(page, server):
    run_prompt(page, server)
    # an attention edge out of a block node (not the embedding): x:l+1:s (block l) -> a:l+1:t
    edges = page.locator("[data-testid=graph-edge][data-kind=attn]").evaluate_all(
        "els => els.map(e => [e.dataset.source, e.dataset.target, e.dataset.layer])")
    source, target, edge_layer = next(e for e in edges if not e[0].startswith("x:0:"))
    node = page.locator(f"[data-testid=graph-node][data-id='{source}']")
    layer = int(node.get_attribute("data-layer"))
    assert node.get_attribute("data-kind") == "block" and int(edge_layer) == layer + 1

    token = open_node(page, source)
    # the kind is upper-cased by the style, the place is shown as the graph writes it
    assert token["kicker"] == f"BLOCK OUTPUT · L{layer} out"
    assert token["layer"] == str(layer)
    head = open_edge(page, source, target)
    assert head["kicker"] == f"ATTENTION EDGE · L{layer + 1}: L{layer} out → L{layer + 1} attn"
    assert head["layer"] == str(layer + 1)
    # the heatmaps' section names the block the same way
    page.get_by_test_id("head-panel").locator("[data-heatmap]").first.wait_for()
    assert page.get_by_test_id("head-panel").locator("h3", has_text=f"L{layer + 1}, ").count() == 1

    ffn = page.locator("[data-testid=graph-node][data-kind=ffn]").first
    f_layer = int(ffn.get_attribute("data-layer"))
    neuron = open_node(page, ffn.get_attribute("data-id"))
    assert neuron["kicker"] == f"FFN · L{f_layer} FFN" and neuron["layer"] == str(f_layer)
    text = page.get_by_test_id("neuron-panel").inner_text()
    assert "layer " not in text.lower()


def test_threshold_target_and_selection_go_to_the_url_and_back(page, server):
    n_tokens = run_prompt(page, server)
    p = n_tokens - 2
    page.locator(f"[data-testid=prediction][data-pos='{p}']").click()
    settled(page, str(p))
    page.get_by_test_id("threshold-slider").fill("0.1")
    page.wait_for_function("() => new URLSearchParams(location.search).get('threshold') === '0.1' "
                           "&& document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'")
    node_id = page.locator("[data-testid=graph-node][data-kind=block]").first.get_attribute("data-id")
    before = open_node(page, node_id)
    q = page.evaluate("Object.fromEntries(new URLSearchParams(location.search))")
    assert (q["target"], q["threshold"], q["sel"], q["prompt"]) == (str(p), "0.1", f"node:{node_id}", PROMPT)
    shown = drawn(page)
    url = page.url

    page.goto("about:blank")
    page.goto(url)  # the URL this tab wrote itself: it restores the view without asking
    settled(page, str(p))
    assert page.get_by_test_id("link-confirm").count() == 0
    assert page.locator(f"[data-testid=prediction][data-pos='{p}']").get_attribute("aria-selected") == "true"
    assert threshold_shown(page) == "0.1"
    assert panel_of(page, "token-panel") == before
    assert drawn(page) == shown
