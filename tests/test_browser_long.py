"""Long traces in the web app (Debian's chromium through Playwright, as tests/test_browser.py):
the first graph comes at the threshold asked for and the finer route follows in the background,
an estimate is shown before a long run, and the head panel explains why a head attends.

Tests wait for the app's own signals (window.__routelensDebug: `refining`, `refine`, `fetches`,
`ready`; data-hooks="sync"; the notes' elements), never for a fixed time. A route the test holds
(page.route) stands for a slow server: the test releases it when it has looked."""

from __future__ import annotations

import json
import re

import pytest

from servers import page_api as api, running_server

WAIT_MS = 600_000  # as tests/test_browser.py: only ends a hang
pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
LONG_PROMPT = ("The old river city lay north of the stone market, and every winter the garden music "
               "drifted over the paper letters on the silver window while the morning harbor bridge "
               "told its story to the mountain")

# Records what the refinement note said, and what was drawn at that moment, as it happens.
REFINE_WATCH = """
window.__refineNotes = [];
new MutationObserver(() => {
  const n = document.querySelector('[data-testid=refine-note]');
  const text = n && !n.hidden ? n.textContent : '';
  const last = window.__refineNotes[window.__refineNotes.length - 1];
  if (text && (!last || last.text !== text)) {
    const dbg = window.__routelensDebug;
    window.__refineNotes.push({text, drawn: dbg && dbg.stats ? dbg.stats().edges : -1});
  }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    pg.add_init_script(REFINE_WATCH)
    yield pg
    context.close()


def refined(page) -> None:
    """The background refinement has ended and the hooks follow the drawing."""
    page.wait_for_function("() => { const d = window.__routelensDebug; return d && d.refine.log.length > 0 && !d.refining "
                           "&& document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }")


def start_run(page, server: str, prompt: str = PROMPT) -> None:
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()


def drawn(page) -> dict:
    return page.evaluate("window.__routelensDebug.stats()")


def test_first_graph_at_the_threshold_then_refined_to_the_finest(page, server):
    start_run(page, server, LONG_PROMPT)
    refined(page)
    dbg = page.evaluate("(() => { const d = window.__routelensDebug; return {fetches: d.fetches, refine: d.refine, "
                        "traceId: d.traceId, stats: d.stats()}; })()")
    first, finer = dbg["fetches"]
    # the route asked for (the default threshold) came first and was drawn before the finer one
    assert first["threshold"] == pytest.approx(0.04) and not first["refine"]
    assert finer["threshold"] == pytest.approx(0.01) and finer["refine"] and finer["target"] == first["target"]
    notes = page.evaluate("window.__refineNotes")
    assert notes, "the refinement note never appeared"
    assert "refining" in notes[0]["text"] and "0.04" in notes[0]["text"], notes
    assert notes[0]["drawn"] > 0, "the note appeared before the first graph was drawn"
    # ... and it has gone
    assert page.get_by_test_id("refine-note").is_hidden()
    assert dbg["refine"]["state"] == "idle" and dbg["refine"]["log"][-1]["ok"]
    # the final graph is the API's route at 0.01, drawn (pruned in the page) at 0.04 as the API's
    target, trace = first["target"], dbg["traceId"]
    at_01 = api(page, f"api/trace/{trace}/graph?target={target}&threshold=0.01")
    at_04 = api(page, f"api/trace/{trace}/graph?target={target}&threshold=0.04")
    assert (first["nodes"], first["edges"]) == (len(at_04["nodes"]), len(at_04["edges"]))
    assert dbg["stats"]["fetched"] == {"nodes": len(at_01["nodes"]), "edges": len(at_01["edges"])}
    assert (dbg["stats"]["nodes"], dbg["stats"]["edges"]) == (len(at_04["nodes"]), len(at_04["edges"]))
    assert page.locator("[data-testid=graph-edge]").count() == len(at_04["edges"])
    assert len(at_01["edges"]) > len(at_04["edges"])
    # lower now: drawn from what the page holds, no request
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/" in r.url else None)
    page.evaluate("window.__routelensDebug.setThreshold(0.01)")
    page.wait_for_function("() => document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'")
    assert page.locator("[data-testid=graph-edge]").count() == len(at_01["edges"])
    assert requests == []
    assert page.get_by_test_id("error-banner").count() == 0


def hold(page, pattern: str) -> list:
    """Hold the requests whose URL matches `pattern` (a slow server); returns the held routes."""
    held: list = []
    page.route(re.compile(pattern), lambda route: held.append(route))
    return held


def release(held: list) -> None:
    for route in held:
        try:
            route.continue_()
        except Exception:  # the page gave up on it (aborted): nothing to release
            pass
    held.clear()


def test_slider_below_the_drawn_threshold_waits_for_the_refinement(page, server):
    held = hold(page, r"/graph\?.*threshold=0\.01\b")
    start_run(page, server, LONG_PROMPT)
    page.wait_for_function("() => window.__routelensDebug.refining")
    note = page.get_by_test_id("refine-note")
    assert note.is_visible() and "refining" in note.inner_text()
    page.locator("[data-testid=graph][data-hooks=sync]").wait_for()
    coarse = drawn(page)
    trace, target = page.evaluate("[window.__routelensDebug.traceId, window.__routelensDebug.fetches[0].target]")
    # the user zooms and opens a node's panel, then asks for a lower threshold than was fetched
    # (columns not compacted: a re-layout would move the drawing for reasons of its own)
    page.get_by_test_id("compact-toggle").uncheck()
    node = page.locator("[data-testid=graph-node][data-kind=block]").last
    node_id = node.get_attribute("data-id")
    node.click()
    page.get_by_test_id("token-panel").wait_for()
    before_zoom = page.locator("g.viewport").get_attribute("transform")
    page.get_by_title("zoom out (-)").click()
    page.wait_for_function("t => document.querySelector('g.viewport').getAttribute('transform') !== t", arg=before_zoom)
    page.evaluate("document.querySelector('[data-testid=token-panel]').dataset.mark = 'kept'")
    page.get_by_test_id("threshold-input").fill("0.02")
    page.get_by_test_id("threshold-input").press("Enter")
    page.wait_for_function("() => window.__routelensDebug.refine.waitingAt === 0.02")
    assert "0.02" in note.inner_text() and "0.04" in note.inner_text()
    # the drawing stays what was fetched: no graph that misses routes for 0.02
    now = drawn(page)
    assert (now["nodes"], now["edges"]) == (coarse["nodes"], coarse["edges"])
    view = page.locator("g.viewport").get_attribute("transform")
    # the server answers: the finer route is swapped in, drawn at 0.02, the view and panel kept
    page.unroute(re.compile(r"/graph\?.*threshold=0\.01\b"))
    release(held)
    refined(page)
    assert note.is_hidden()
    at_02 = api(page, f"api/trace/{trace}/graph?target={target}&threshold=0.02")
    after = drawn(page)
    assert (after["nodes"], after["edges"]) == (len(at_02["nodes"]), len(at_02["edges"]))
    assert after["threshold"] == pytest.approx(0.02)
    assert page.locator("g.viewport").get_attribute("transform") == view
    # the same panel element (not built again) for the same node, which stays selected
    assert page.get_by_test_id("token-panel").get_attribute("data-mark") == "kept"
    assert page.evaluate("new URLSearchParams(location.search).get('sel')") == f"node:{node_id}"
    assert page.get_by_test_id("error-banner").count() == 0


def test_a_new_target_drops_the_stale_refinement(page, server):
    held = hold(page, r"/graph\?.*threshold=0\.01\b")
    start_run(page, server, PROMPT)
    page.wait_for_function("() => window.__routelensDebug.refining")
    first_target = page.evaluate("window.__routelensDebug.fetches[0].target")
    # another target: the first refinement is cancelled, the new one is held too
    page.locator("[data-testid=prediction][data-pos='2']").click()
    page.wait_for_function("() => { const d = window.__routelensDebug; return d.refining && "
                           "d.fetches.length === 2 && d.fetches[1].target === 2; }")
    page.unroute(re.compile(r"/graph\?.*threshold=0\.01\b"))
    release(held)  # the stale answer (if still wanted by the browser) must not be drawn
    refined(page)
    dbg = page.evaluate("(() => { const d = window.__routelensDebug; return {fetches: d.fetches, stats: d.stats(), "
                        "traceId: d.traceId}; })()")
    assert first_target != 2
    assert [f["target"] for f in dbg["fetches"] if f["refine"]] == [2]
    at_01 = api(page, f"api/trace/{dbg['traceId']}/graph?target=2&threshold=0.01")
    assert dbg["stats"]["fetched"] == {"nodes": len(at_01["nodes"]), "edges": len(at_01["edges"])}
    assert page.get_by_test_id("error-banner").count() == 0


def test_refinement_error_is_a_note_not_a_wall(page, server):
    page.route(re.compile(r"/graph\?.*threshold=0\.01\b"), lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"error": {"code": "busy", "message": "the server is busy, try again"}})))
    start_run(page, server, PROMPT)
    note = page.get_by_test_id("refine-note")
    page.wait_for_function("() => window.__routelensDebug.refine.state === 'error'")
    assert "busy" in note.inner_text()
    # the first graph stays usable; no error banner over the page
    assert page.locator("[data-testid=graph-edge]").count() > 0
    assert page.get_by_test_id("error-banner").count() == 0
    # Retry, with the server answering again
    page.unroute(re.compile(r"/graph\?.*threshold=0\.01\b"))
    page.get_by_test_id("refine-retry").click()
    refined(page)
    assert note.is_hidden()
    assert page.evaluate("window.__routelensDebug.fetches.at(-1).threshold") == pytest.approx(0.01)


# ---- why a head attends (GET /api/trace/{id}/qk) ------------------------------------------------

def test_head_panel_shows_why_the_head_attends_as_the_api_does(page, server):
    start_run(page, server, PROMPT)
    refined(page)
    page.locator("[data-testid=graph-edge][data-kind=attn]").last.click(force=True)
    panel = page.get_by_test_id("head-panel")
    panel.wait_for()
    # one head of the edge (the list's first after "All heads": the strongest)
    row = panel.locator("li.head-row:not([data-head='-1'])").first
    row.wait_for()
    row.click()
    qk = panel.get_by_test_id("qk-panel")
    page.wait_for_function("h => document.querySelector('[data-testid=qk-panel]')?.dataset.head === h",
                           arg=row.get_attribute("data-head"))
    # loaded on demand: nothing is asked before the section is opened (keyboard: Enter on its summary)
    assert qk.get_by_test_id("qk-pair").count() == 0
    qk.get_by_test_id("qk-toggle").focus()
    page.keyboard.press("Enter")
    qk.get_by_test_id("qk-pair").first.wait_for()
    ref = {k: int(qk.get_attribute(f"data-{k}")) for k in ("layer", "head", "query", "key")}
    shown = qk.get_by_test_id("qk-pair").evaluate_all(
        "els => els.map(e => [e.dataset.query, e.dataset.key, +e.dataset.value, e.innerText])")
    trace = page.evaluate("window.__routelensDebug.traceId")
    d = api(page, f"api/trace/{trace}/qk?layer={ref['layer']}&head={ref['head']}&query={ref['query']}&key={ref['key']}&k=10")
    assert [(q, k) for q, k, _, _ in shown] == [(p["query"], p["key"]) for p in d["pairs"]]
    assert [v for _, _, v, _ in shown] == pytest.approx([p["value"] for p in d["pairs"]])
    for q, k, v, text in shown:  # each item names both parts and shows the value with its sign
        assert q in text and k in text and ("+" in text if v > 0 else "−" in text if v < 0 else True)
    # the score, the heat map (one cell per pair of the matrix), and how to get the same elsewhere
    assert f"{abs(d['score']):.3f}"[:4] in qk.get_by_test_id("qk-score").inner_text()
    cells = qk.get_by_test_id("qk-matrix").locator("td.qk-cell")
    assert cells.count() == len(d["matrix"]["rows"]) * len(d["matrix"]["cols"])
    assert cells.first.get_attribute("title")
    howto = qk.get_by_test_id("qk-howto").inner_text()
    assert f"trace.why_attends({ref['layer']}, {ref['head']}, {ref['query']}, {ref['key']})" in howto and "/qk?" in howto
    assert page.get_by_test_id("error-banner").count() == 0


# ---- the estimate before a long run (POST /api/estimate) -----------------------------------------

def test_estimate_is_shown_after_typing_a_long_prompt(page, server):
    page.goto(server + "/")
    page.locator("[data-testid=model-status].st-ready").wait_for()
    long_prompt = LONG_PROMPT + " and then the river " * 4
    assert len(long_prompt) > 200
    page.get_by_test_id("prompt-input").fill(long_prompt)
    est = page.get_by_test_id("estimate")
    page.wait_for_function("() => { const e = window.__routelensDebug.estimate; return e && e.n_tokens > 0; }")
    model = page.get_by_test_id("model-select").input_value()
    d = api(page, "api/estimate", {"model": model, "prompt": long_prompt, "chat": False})
    text = est.inner_text()
    assert f"≈ {d['n_tokens']:,} tokens" in text and "~" in text and " s" in text
    # a short prompt: no estimate
    page.get_by_test_id("prompt-input").fill(PROMPT)
    est.wait_for(state="hidden")


# ---- the same views with the server's answers made up (page.route): the UI's side of the contract

@pytest.fixture(scope="module")
def debug_server(smollm2, tmp_path_factory):
    """The catalog's default model (long prompts fit), in debug mode (the debug panel)."""
    config = tmp_path_factory.mktemp("dbg") / "config.json"
    config.write_text(json.dumps({"debug": True}))
    with running_server("--config", str(config)) as base:
        yield base


ESTIMATE = {"peak_bytes": 95 * 2**20, "kept_bytes": 40 * 2**20, "forward_seconds": 3.2, "route_seconds": 0.6}


def test_estimate_warns_and_debug_shows_measured_beside_estimated(browser, debug_server):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.route("**/api/estimate", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps({
            "model": "smollm2-135m-instruct", "n_tokens": 612, "estimate": ESTIMATE,
            "limits": {"max_trace_memory_bytes": 64 * 2**20, "prompt_token_limit": 4096},
            "fits": False, "why": "the trace needs ~95 MiB; this server allows 64 MiB per trace"})))

        def with_cost(route):
            res = route.fetch()
            body = res.json()
            body["estimate"] = ESTIMATE
            body["measured"] = {"peak_bytes": None, "forward_seconds": 2.5, "kept_bytes": 41 * 2**20}
            route.fulfill(response=res, body=json.dumps(body))

        page.route("**/api/trace", with_cost)
        page.goto(debug_server + "/")
        page.locator("[data-testid=model-status].st-ready").wait_for()
        prompt = LONG_PROMPT + " and the bridge"
        page.get_by_test_id("prompt-input").fill(prompt)
        est = page.get_by_test_id("estimate")
        est.get_by_test_id("estimate-why").wait_for()
        assert "≈ 612 tokens · ~95 MiB · ~4 s" in est.inner_text()
        assert "64 MiB" in est.inner_text()
        assert page.get_by_test_id("run-button").is_enabled()  # Run stays allowed
        page.get_by_test_id("run-button").click()
        page.locator("[data-testid=graph-edge]").first.wait_for()
        page.get_by_test_id("debug-toggle").click()
        cost = page.get_by_test_id("debug-cost")
        cost.wait_for()
        text = cost.inner_text()
        assert "95 MiB" in text and "41 MiB" in text and "2.5 s" in text and "n/a" in text
        assert page.get_by_test_id("error-banner").count() == 0
    finally:
        context.close()


def test_an_older_server_without_the_new_endpoints_breaks_nothing(browser, debug_server):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    asked: list[str] = []
    try:
        def missing(route):
            asked.append(route.request.url)
            route.fulfill(status=404, content_type="application/json",
                          body=json.dumps({"error": {"code": "not_found", "message": "Not Found"}}))

        def without_cost(route):
            res = route.fetch()
            body = res.json()
            body.pop("estimate", None)
            body.pop("measured", None)
            route.fulfill(response=res, body=json.dumps(body))

        page.route("**/api/estimate", missing)
        page.route(re.compile(r"/qk\?"), missing)
        page.route("**/api/trace", without_cost)
        page.goto(debug_server + "/")
        page.locator("[data-testid=model-status].st-ready").wait_for()
        page.get_by_test_id("prompt-input").fill(LONG_PROMPT + " and the bridge")
        page.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.includes('/api/estimate'))")
        page.get_by_test_id("run-button").click()
        page.locator("[data-testid=graph-edge]").first.wait_for()
        page.wait_for_function("() => !window.__routelensDebug.refining")
        assert page.get_by_test_id("estimate").is_hidden()
        page.get_by_test_id("debug-toggle").click()
        page.get_by_test_id("debug-panel").wait_for()
        assert page.get_by_test_id("debug-cost").count() == 0
        page.get_by_test_id("debug-toggle").click()  # closed again: it lies over the inspector
        page.locator("[data-testid=graph-edge][data-kind=attn]").last.click(force=True)
        panel = page.get_by_test_id("head-panel")
        panel.locator("li.head-row:not([data-head='-1'])").first.click()
        panel.get_by_test_id("qk-toggle").click()
        panel.get_by_test_id("qk-error").wait_for()  # inline, in the section
        assert page.get_by_test_id("error-banner").count() == 0
        assert errors == []
    finally:
        context.close()


def test_a_demo_server_is_never_asked_below_its_lowest_threshold(browser, smollm2, tmp_path):
    """In demo mode the server draws no route below its `demo_min_threshold` (403): the page starts
    there, offers nothing lower and fetches no finer route."""
    config = tmp_path / "demo.json"
    config.write_text(json.dumps({"demo_mode": True, "demo_min_threshold": 0.05}))
    with running_server("--config", str(config)) as base:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        try:
            assert api_get(page, base, "api/config")["min_threshold"] == pytest.approx(0.05)
            start_run(page, base)
            page.wait_for_function("() => document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'")
            dbg = page.evaluate("(() => { const d = window.__routelensDebug; return {fetches: d.fetches, "
                                "refining: d.refining, log: d.refine.log}; })()")
            assert [f["threshold"] for f in dbg["fetches"]] == [pytest.approx(0.05)]
            assert dbg["refining"] is False and dbg["log"] == []
            assert float(page.get_by_test_id("threshold-slider").get_attribute("min")) == pytest.approx(0.05)
            assert page.get_by_test_id("error-banner").count() == 0
            assert page.get_by_test_id("refine-note").is_hidden()
        finally:
            context.close()


def api_get(page, base: str, path: str) -> dict:
    page.goto(base + "/")
    return api(page, path)
