"""The dataset view in the web app (frontend/src/dataset/), in Debian's chromium as
tests/test_browser_why.py: the heatmap shows /api/analysis's numbers (per measure and label), a
head shows /api/analysis/{name}/head's prompts, and a prompt opens as the route the analysis
counted (the prompt traced, the target at its position, the drawn edges the API's graph).

Tests wait for the app's own signals (data-state on the view, data-hooks="sync",
window.__routelensDebug), never a fixed time; predicates are functions because of the page's
Content-Security-Policy."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from servers import drawn_edges, edges_of
from servers import page_api as api

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
PROMPTS = [("The capital of France is", "prose"), ("def add(a, b): return a +", "code"),
           ("The cat sat on the", "prose"), ("for i in range(10):", "code")]


@pytest.fixture(scope="module")
def analysed(smollm2, tmp_path_factory):
    """A finished analysis of four short prompts on smollm2 (routes from the last position)."""
    from routelens.analysis.run import Spec, analyze

    root = tmp_path_factory.mktemp("dataset")
    data = root / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PROMPTS))
    out = root / "fourprompts"
    analyze(Spec(model=MODEL, dataset=str(data), positions="last", shard_size=4), out, model=smollm2, progress=False)
    return out


@pytest.fixture(scope="module")
def ds_server(analysed):
    from servers import running_server

    with running_server("--analysis", str(analysed)) as base:
        yield base


@pytest.fixture()
def dpage(browser, ds_server):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(600_000)
    yield pg
    context.close()


def cells(page) -> list[tuple[int, int, float]]:
    return [tuple(c) for c in page.locator("[data-testid=dataset-cell]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.layer), Number(e.dataset.head), Number(e.dataset.value)])")]


def wait_map(page, measure: str, label: str) -> None:
    page.wait_for_function("""([m, l]) => { const g = document.querySelector('[data-testid=dataset-heatmap]');
        return g && g.dataset.measure === m && g.dataset.label === l; }""", arg=[measure, label])


def assert_cells(page, table: list[list[float]]) -> None:
    got = cells(page)
    assert len(got) == len(table) * len(table[0])
    for layer, head, value in got:
        assert value == table[layer][head], (layer, head)


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_dataset_view_shows_the_analysis_and_opens_a_prompt_as_its_route(dpage, ds_server, analysed):
    page = dpage
    name = analysed.name
    page.goto(ds_server + "/")
    page.get_by_test_id("dataset-open").click()
    page.locator(f"[data-testid=dataset-view][data-state=ready][data-name='{name}']").wait_for()
    assert query(page)["dataset"] == name
    assert page.get_by_test_id("dataset-pick").input_value() == name
    d = api(page, f"api/analysis/{name}")
    assert d["labels"] == ["code", "prose"]

    # the heatmap: every head's mean importance per route, the last layer on top
    wait_map(page, "mean", "all")
    assert_cells(page, d["heads"]["all"])
    first = page.locator("[data-testid=dataset-cell]").first
    assert first.get_attribute("data-layer") == str(len(d["heads"]["all"]) - 1)
    assert page.get_by_test_id("dataset-legend").count() == 1
    # the measure switch and the label selector show the API's other tables
    page.get_by_test_id("dataset-measure").select_option("frequency")
    wait_map(page, "frequency", "all")
    assert_cells(page, d["frequency"]["all"])
    page.get_by_test_id("dataset-label").select_option("l:code")
    wait_map(page, "frequency", "code")
    assert_cells(page, d["frequency"]["labels"]["code"])
    page.get_by_test_id("dataset-measure").select_option("mean")
    wait_map(page, "mean", "code")
    assert_cells(page, d["heads"]["labels"]["code"])
    page.get_by_test_id("dataset-label").select_option("all")
    wait_map(page, "mean", "all")
    # the findings: previous-token heads as the API lists them
    prev = page.locator("[data-testid=dataset-prev-head]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.layer), Number(e.dataset.head)])")
    assert prev == [[r["layer"], r["head"]] for r in d["previous_token_heads"]][:24]
    assert page.locator("[data-testid=dataset-diff]").count() == min(20, len(d["label_differences"]))

    # the head with the largest mean: its prompts are the API's
    layer, head, _ = max(cells(page), key=lambda c: c[2])
    page.locator(f"[data-testid=dataset-cell][data-layer='{layer}'][data-head='{head}']").click()
    page.locator(f"[data-testid=dataset-head][data-state=ready][data-layer='{layer}'][data-head='{head}']").wait_for()
    want = api(page, f"api/analysis/{name}/head?layer={layer}&head={head}")["prompts"]
    assert want, "the strongest head lies on some route"
    shown = page.locator("[data-testid=dataset-prompt]").evaluate_all(
        "els => els.map(e => [Number(e.dataset.prompt), Number(e.dataset.pos), Number(e.dataset.importance), e.dataset.label,"
        " e.querySelector('.ds-prompt-text').textContent])")
    assert shown == [[p["prompt"], p["pos"], p["importance"], p["label"], p["text"]] for p in want]

    # a reload of the view's URL (this tab's own) opens it again
    page.goto(page.url)
    page.locator(f"[data-testid=dataset-view][data-state=ready][data-name='{name}']").wait_for()
    page.locator(f"[data-testid=dataset-cell][data-layer='{layer}'][data-head='{head}']").click()
    page.locator(f"[data-testid=dataset-head][data-state=ready][data-layer='{layer}'][data-head='{head}']").wait_for()

    # the first prompt opens as the route the analysis counted
    p = want[0]
    page.locator("[data-testid=dataset-prompt]").first.click()
    page.wait_for_function("""(t) => { const d = window.__routelensDebug;
        const q = new URLSearchParams(location.search);
        return d && !d.refining && d.traceId && d.fetches.some(f => String(f.target) === t && f.refine)
            && q.get('target') === t && !q.has('dataset')
            && document.querySelector('[data-testid=graph]').dataset.hooks === 'sync'; }""", arg=str(p["pos"]))
    assert page.get_by_test_id("dataset-view").is_hidden()
    assert page.get_by_test_id("prompt-input").input_value() == p["text"]
    q = query(page)
    assert q["prompt"] == p["text"] and q["target"] == str(p["pos"]) and q["model"] == MODEL
    assert "chat" not in q and "gen" not in q
    trace = page.evaluate("window.__routelensDebug.traceId")
    tau = page.get_by_test_id("threshold-input").input_value()
    g = api(page, f"api/trace/{trace}/graph?target={p['pos']}&threshold={tau}")
    assert g["target"]["pos"] == p["pos"]
    assert page.locator("[data-testid=graph-edge]").count() > 0
    assert drawn_edges(page) == edges_of(g)
    # the head's panel is open on the route's edge that this head carries most
    panel = page.locator(f"[data-testid=head-panel][data-layer='{layer}']")
    panel.wait_for()
    assert query(page)["head"] == str(head) and query(page)["sel"].startswith("edge:attn|")
    assert page.get_by_test_id("error-banner").is_hidden()
