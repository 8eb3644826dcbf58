"""Asking why in the web app (frontend/src/why/), in Debian's chromium as tests/test_browser_app.py:
the foil picker draws the API's contrastive route and keeps the foil in the URL; the direct logit
attribution view and the head panel show the API's numbers; the knockout check shows /verify's
report and its curve.

Tests wait for the app's own signals (selectors, data-hooks="sync", window.__routelensDebug), never
a fixed time; predicates are functions because of the page's Content-Security-Policy."""

from __future__ import annotations

import pytest

from servers import drawn_edges, edges_of
from servers import page_api as api

pytestmark = pytest.mark.slow

IOI = "When Mary and John went to the store, John gave a drink to"
FRANCE = "The capital of France is"


def settled(page, target: int, foil: int | None) -> None:
    """The route to `target` against `foil` (None: the plain route) was refined and drawn, and the
    URL says so."""
    page.wait_for_function("""([t, foil]) => { const d = window.__routelensDebug;
        const q = new URLSearchParams(location.search);
        return d && !d.refining && d.foil === foil
            && d.fetches.some(f => String(f.target) === t && f.refine && (f.foil ?? null) === foil)
            && q.get('target') === t && q.get('foil') === (foil === null ? null : String(foil))
            && document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }""", arg=[str(target), foil])


def run_prompt(page, server: str, prompt: str) -> int:
    """Run `prompt`; its number of tokens once the route to the last one is refined."""
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()
    n = page.locator("[data-testid=prediction]").count()
    settled(page, n - 1, None)
    return n


def test_foil_picker_draws_the_contrastive_route_and_keeps_it_in_the_url(page, server):
    n = run_prompt(page, server, IOI)
    last = n - 1
    trace = page.evaluate("window.__routelensDebug.traceId")
    tau = page.get_by_test_id("threshold-input").input_value()

    # a foil of several tokens is refused, and the message says so
    page.get_by_test_id("foil-input").fill(" Johnathan Smithers")
    page.get_by_test_id("foil-input").press("Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=foil-error]').textContent.length > 0")
    assert "token" in page.get_by_test_id("foil-error").inner_text()
    assert page.evaluate("window.__routelensDebug.foil") is None

    # " John" as the foil: by its chip's vs, or typed when it is not among the top predictions
    john = page.locator("[data-testid=foil-chip][data-token=' John'] [data-testid=foil-pick]")
    if john.count():
        john.click()
    else:
        page.get_by_test_id("foil-input").fill(" John")
        page.get_by_test_id("foil-input").press("Enter")
    page.wait_for_function("() => window.__routelensDebug.foil !== null")
    foil = page.evaluate("window.__routelensDebug.foil")
    settled(page, last, foil)

    g = api(page, f"api/trace/{trace}/graph?target={last}&threshold={tau}&foil_id={foil}")
    assert g["target"]["foil"] == " John" and g["target"]["foil_id"] == foil
    contrastive = edges_of(g)
    assert drawn_edges(page) == contrastive
    plain = edges_of(api(page, f"api/trace/{trace}/graph?target={last}&threshold={tau}"))
    assert contrastive != plain  # the foil changes the route drawn

    line = page.get_by_test_id("contrast-route").inner_text()
    assert "Mary" in line and "John" in line and "rather than" in line
    diff = float(page.get_by_test_id("logit-diff").get_attribute("data-value"))
    assert diff == pytest.approx(g["target"]["logit_diff"], abs=1e-9)
    assert page.locator("[data-testid=foil-chip].is-foil").get_attribute("data-token-id") == str(foil)

    # a reload of the URL (this tab's own: no confirmation) brings the foil and its route back
    url = page.url
    assert f"foil={foil}" in url
    page.goto("about:blank")
    page.goto(url)
    settled(page, last, foil)
    assert page.get_by_test_id("link-confirm").count() == 0
    assert drawn_edges(page) == contrastive
    assert page.locator("[data-testid=foil-chip].is-foil").count() == 1

    # × clears it: the plain route again, no foil in the URL
    page.get_by_test_id("foil-clear").click()
    settled(page, last, None)
    assert drawn_edges(page) == plain
    assert page.locator("[data-testid=foil-chip].is-foil").count() == 0
    assert page.get_by_test_id("contrast-route").count() == 0

    # a foil belongs to its target: another position clears it
    page.locator("[data-testid=foil-pick]").first.click()
    page.wait_for_function("() => window.__routelensDebug.foil !== null")
    page.locator(f"[data-testid=prediction][data-pos='{last - 1}']").click()
    settled(page, last - 1, None)


def test_direct_logit_attribution_equals_the_api(page, server):
    n = run_prompt(page, server, IOI)
    last = n - 1
    trace = page.evaluate("window.__routelensDebug.traceId")
    page.get_by_test_id("foil-input").fill(" John")
    page.get_by_test_id("foil-input").press("Enter")
    page.wait_for_function("() => window.__routelensDebug.foil !== null")
    foil = page.evaluate("window.__routelensDebug.foil")
    settled(page, last, foil)

    page.get_by_test_id("dla-open").click()
    grid = page.get_by_test_id("dla-heatmap")
    grid.wait_for()
    a = api(page, f"api/trace/{trace}/attribution?pos={last}&foil_id={foil}")
    cells = grid.locator(".dla-cell").evaluate_all(
        "els => els.map(e => [Number(e.dataset.layer), e.dataset.head, Number(e.dataset.value)])")
    n_heads = len(a["layers"][0]["heads"])
    assert len(cells) == len(a["layers"]) * (n_heads + 1)  # no attention bias on smollm2
    for layer, head, value in cells:
        want = a["layers"][layer]["ffn"] if head == "ffn" else a["layers"][layer]["heads"][int(head)]
        assert value == pytest.approx(want, abs=1e-9)
    embed = float(grid.get_attribute("data-embed"))
    constant = float(grid.get_attribute("data-constant"))
    assert sum(v for _, _, v in cells) + embed + constant == pytest.approx(a["logit_diff"], abs=1e-3)

    # the strongest head's cell opens its panel, which shows the same DLA
    layer, head, value = max((c for c in cells if c[1] != "ffn"), key=lambda c: abs(c[2]))
    grid.locator(f".dla-cell[data-layer='{layer}'][data-head='{head}']").click()
    shown = page.locator(f"[data-testid=head-panel] [data-testid=head-dla][data-head='{head}'][data-value]")
    shown.wait_for()
    assert float(shown.get_attribute("data-value")) == pytest.approx(a["layers"][layer]["heads"][int(head)], abs=1e-9)
    assert page.get_by_test_id("head-panel").get_attribute("data-layer") == str(layer)
    row = page.locator(f"[data-testid=head-panel] .head-row[data-head='{head}'] .head-dla-cell")
    if row.count():  # the head carries the edge opened: its row shows the DLA beside its importance
        assert float(row.get_attribute("data-dla")) == pytest.approx(value, abs=1e-9)


def test_knockout_check_shows_the_verify_report_and_curve(page, server):
    n = run_prompt(page, server, FRANCE)
    last = n - 1
    trace = page.evaluate("window.__routelensDebug.traceId")
    assert page.get_by_test_id("threshold-input").input_value() == "0.04"
    page.get_by_test_id("verify-run").click()
    verdict = page.get_by_test_id("verify-verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-beats") == "true"
    assert "beats random" in verdict.inner_text().lower()

    r = api(page, f"api/trace/{trace}/verify?target={last}&threshold=0.04&renormalise=false&trials=5&seed=0")
    fig = page.get_by_test_id("verify-figure")
    value = lambda testid: float(fig.locator(f"[data-testid={testid}]").get_attribute("data-value"))  # noqa: E731
    assert value("verify-full") == pytest.approx(r["full"]["prob"], rel=1e-6)
    assert value("verify-route") == pytest.approx(r["route"]["prob"], rel=1e-6)
    assert value("verify-random-mean") == pytest.approx(r["random_mean"]["prob"], rel=1e-6)
    trials = fig.locator("[data-testid=verify-trial]").evaluate_all("els => els.map(e => Number(e.dataset.value))")
    assert trials == pytest.approx([t["prob"] for t in r["random"]], rel=1e-6)
    words = fig.get_by_test_id("verify-words").inner_text()
    assert "the route alone keeps" in words and "Paris" in words

    # the curve: one point per threshold, the API's shares
    page.get_by_test_id("verify-curve").click()
    chart = page.get_by_test_id("verify-curve-chart")
    chart.wait_for()
    c = api(page, f"api/trace/{trace}/verify?target={last}&renormalise=false&trials=5&seed=0&curve=true"
                  "&thresholds=0.01,0.02,0.04,0.08,0.16")
    points = chart.locator("[data-threshold]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.threshold), Number(e.dataset.routeShare)])")
    assert [p[0] for p in points] == [rep["threshold"] for rep in c["reports"]]
    assert [p[1] for p in points] == pytest.approx([rep["route"]["prob"] / rep["full"]["prob"] for rep in c["reports"]], rel=1e-6)

    # another threshold: the figure is marked stale
    page.get_by_test_id("threshold-input").fill("0.1")
    page.get_by_test_id("threshold-input").press("Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=verify-card]').dataset.stale === 'true'")
