"""Generation and comparison in the web app (Debian's chromium via Playwright, as
tests/test_browser_app.py): the step control against POST /api/trace with `generate` and each
step's route against /graph?target=&token_id=, and the compare view against POST /api/compare
(edges, their colours by the sign of delta, the heads), each restored from its URL.

Tests wait for the app's own signals (selectors, data-hooks="sync", window.__routelensDebug),
never a fixed time."""

from __future__ import annotations

import re

import pytest

from servers import drawn_edges, edges_of
from servers import page_api as api

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
IOI_A = "When Mary and John went to the store, John gave a drink to"
IOI_B = "When Mary and John went to the park, Mary gave a ball to"
BLUE, VERMILLION, GREY = "#0072B2", "#D55E00", "#9AA5B1"


def settled(page, target: str) -> None:
    """The route to `target` was refined and drawn, the URL says it, and the hooks follow."""
    page.wait_for_function("""t => { const d = window.__routelensDebug;
        return d && !d.refining && d.fetches.some(f => String(f.target) === t && f.refine)
            && String(new URLSearchParams(location.search).get('target')) === t
            && document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }""", arg=target)


def steps_shown(page) -> list[tuple[int, int, int]]:
    return [tuple(s) for s in page.locator("[data-testid=gen-step]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.step), Number(e.dataset.pos), Number(e.dataset.tokenId)])")]


def current_step(page) -> int:
    return int(page.locator("[data-testid=gen-step].is-current").get_attribute("data-step"))


def generate(page, server: str, n: int, sample: bool = False, seed: int = 0) -> None:
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(PROMPT)
    page.get_by_test_id("generate-count").fill(str(n))
    if sample:
        page.get_by_test_id("generate-sample").check()
        page.get_by_test_id("generate-seed").fill(str(seed))
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=gen-step]").first.wait_for()


def test_generation_steps_draw_each_tokens_route(page, server):
    generate(page, server, 4)
    trace = api(page, "api/trace", {"prompt": PROMPT, "generate": 4})
    steps = trace["generation"]["steps"]
    assert steps_shown(page) == [(s["step"], s["pos"], s["token_id"]) for s in steps]
    settled(page, str(steps[0]["pos"]))  # a run with a generation starts at its first step
    assert current_step(page) == 0
    assert "step 1 of 4" in page.get_by_test_id("gen-stepper").inner_text()
    prompt_length = trace["generation"]["prompt_length"]
    assert page.get_by_test_id("graph").get_attribute("data-tail-from") == str(prompt_length)
    url = page.url
    assert "gen=4" in url and "sample" not in url

    # step 2: the route from the position that predicted it, toward its token
    page.locator("[data-testid=gen-step][data-step='2']").click()
    settled(page, str(steps[2]["pos"]))
    assert current_step(page) == 2
    tau = page.get_by_test_id("threshold-input").input_value()
    want = api(page, f"api/trace/{trace['trace_id']}/graph?target={steps[2]['pos']}&token_id={steps[2]['token_id']}&threshold={tau}")
    assert want["target"]["token_id"] == steps[2]["token_id"]
    assert drawn_edges(page) == edges_of(want)

    # ◀ ▶ and the keyboard move along the steps
    page.get_by_test_id("gen-next").click()
    settled(page, str(steps[3]["pos"]))
    assert current_step(page) == 3 and page.get_by_test_id("gen-next").is_disabled()
    page.get_by_test_id("gen-prev").click()
    settled(page, str(steps[2]["pos"]))
    page.keyboard.press("ArrowLeft")
    settled(page, str(steps[1]["pos"]))
    assert current_step(page) == 1
    page.locator("[data-testid=gen-step][data-step='2']").click()
    settled(page, str(steps[2]["pos"]))

    # a reload of the URL brings back the generation and the step
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    page.locator("[data-testid=gen-step]").first.wait_for()
    settled(page, str(steps[2]["pos"]))
    assert steps_shown(page) == [(s["step"], s["pos"], s["token_id"]) for s in steps]
    assert current_step(page) == 2
    assert page.get_by_test_id("generate-count").input_value() == "4"
    assert drawn_edges(page) == edges_of(want)


def test_sampled_generation_is_reproducible(page, server):
    generate(page, server, 4, sample=True, seed=7)
    settled(page, page.locator("[data-testid=gen-step]").first.get_attribute("data-pos"))
    first = steps_shown(page)
    ranks = page.locator("[data-testid=gen-step]").evaluate_all("els => els.map(e => Number(e.dataset.rank))")
    trace = api(page, "api/trace", {"prompt": PROMPT, "generate": 4, "sample": True, "seed": 7})
    assert trace["generation"]["sampled"] is True
    assert first == [(s["step"], s["pos"], s["token_id"]) for s in trace["generation"]["steps"]]
    assert ranks == [s["rank"] for s in trace["generation"]["steps"]]
    url = page.url
    assert "gen=4" in url and "sample=1" in url and "seed=7" in url
    page.goto("about:blank")
    page.goto(url)
    page.locator("[data-testid=gen-step]").first.wait_for()
    assert steps_shown(page) == first
    assert page.get_by_test_id("generate-sample").is_checked()
    assert page.get_by_test_id("generate-seed").input_value() == "7"


def compared(page) -> dict:
    """Wait for the comparison to be drawn, its hooks in sync; the debug hook's account of it."""
    page.get_by_test_id("compare-panel").wait_for()
    page.wait_for_function("""() => { const d = window.__routelensDebug;
        return d && d.compare && new URLSearchParams(location.search).get('compare')
            && document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }""")
    return page.evaluate("window.__routelensDebug.compare")


def expected_color(delta: float) -> str:
    return GREY if abs(delta) < 0.005 else VERMILLION if delta > 0 else BLUE


def check_comparison(page) -> dict:
    got = compared(page)
    a = api(page, "api/trace", {"prompt": IOI_A})
    b = api(page, "api/trace", {"prompt": IOI_B})
    want = api(page, "api/compare", {"trace_a": a["trace_id"], "trace_b": b["trace_id"], "target_a": -1, "target_b": -1,
                                     "threshold": got["threshold"], "top": 20})
    assert drawn_edges(page) == edges_of(want["graph"])
    # colours follow the sign of delta, on the canvas (debug hook) and in the SVG export
    assert {(e["source"], e["target"], e["kind"]) for e in got["edges"]} == edges_of(want["graph"])
    for e in got["edges"]:
        assert e["color"] == expected_color(e["delta"]), e
    assert {expected_color(e["delta"]) for e in got["edges"]} >= {BLUE, VERMILLION}
    svg = page.evaluate("window.__routelensDebug.exportSvg()")
    paths = re.findall(r'<path [^>]*data-delta="[^"]*"[^>]*>', svg)
    assert len(paths) == len(want["graph"]["edges"])
    for p in paths:
        delta = float(re.search(r'data-delta="([^"]*)"', p).group(1))
        assert f'stroke="{expected_color(delta)}"' in p
    assert "stronger in A" in svg and "stronger in B" in svg
    # the head list is the API's
    rows = page.locator("[data-testid=compare-head]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.layer), Number(e.dataset.head), Number(e.dataset.delta)])")
    assert [(r[0], r[1]) for r in rows] == [(h["layer"], h["head"]) for h in want["heads"]]
    assert [r[2] for r in rows] == pytest.approx([h["delta"] for h in want["heads"]])
    assert page.locator("[data-testid=compare-neuron]").count() == len(want["neurons"])
    return want


def test_compare_view_draws_the_apis_comparison(page, server):
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(IOI_A)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()
    n = page.locator("[data-testid=prediction]").count()
    settled(page, str(n - 1))
    single = drawn_edges(page)
    page.get_by_test_id("compare-open").click()
    page.get_by_test_id("compare-prompt").fill(IOI_B)
    page.get_by_test_id("compare-run").click()
    check_comparison(page)
    assert "compare=" in page.url
    assert page.get_by_test_id("compare-legend").is_visible()

    # a reload of the URL brings the comparison back
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    check_comparison(page)

    # exit: prompt A's single route again
    page.get_by_test_id("compare-close").click()
    page.wait_for_function("""() => { const d = window.__routelensDebug;
        return !new URLSearchParams(location.search).get('compare') && !d.compare && !d.refining && d.stats().edges > 0
            && document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'
            && document.querySelectorAll('[data-testid=graph-edge]').length === d.stats().edges; }""")
    page.get_by_test_id("compare-panel").wait_for(state="detached")
    assert drawn_edges(page) == single
