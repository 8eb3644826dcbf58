"""The route graph reads at a glance at every size: measured from DOM boxes in Debian's chromium, on
the real model, for a 5-token, a ~40-token and a ~650-token prompt.

- token axis: one visible label per drawn column on screen, no two label boxes overlapping, the
  target's (and the selection's) label kept when zoomed out;
- fit (F, a resize): the route fills at least half of the graph area's height and lies inside it;
- the minimap of a long prompt pans the view;
- the SVG export: no two texts overlap, all inside the viewBox; edge strokes grow with the weight
  over the whole range, residual strokes lighter than attention ones of the same weight; the same
  for the server's (and the CLI's) SVG export, drawn by routelens/export/drawing.py;
- tooltips and the layer axis use the one layer numbering (frontend/src/layers.ts);
- a route to every position (target "all", drawn by the standalone viewer) marks every target.

Tests wait for the app's own signals: data-hooks="sync", data-axes="drawn" (the axes follow the
view in the next frame), data-fit (the size the view was last fitted at). Predicates are functions
(the page's CSP refuses eval, see tests/test_browser.py)."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from test_browser import VIEWER_JS, WAIT_MS, refined, script_safe

pytestmark = pytest.mark.slow

PROMPTS = {
    5: "The capital of France is",
    40: ("When Mary and John went to the store, John gave a drink to Mary because she was thirsty "
         "after the long walk home from the old market in the city near the quiet river"),
    650: " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 46),
}
TOKENS = {5: (5, 5), 40: (34, 48), 650: (600, 700)}
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def pages(browser, server):
    """One page per prompt size, run once per module; each test leaves it at the default size and
    fitted (restore())."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    opened: dict[int, object] = {}

    def get(size: int):
        if size not in opened:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(server + "/")
            page.get_by_test_id("prompt-input").fill(PROMPTS[size])
            page.get_by_test_id("run-button").click()
            page.locator("[data-testid=graph-edge]").first.wait_for()
            refined(page)
            n = page.locator("[data-testid=prediction]").count()
            lo, hi = TOKENS[size]
            assert lo <= n <= hi, f"the {size}-token prompt has {n} tokens"
            opened[size] = page
        page = opened[size]
        axes_drawn(page)
        return page

    yield get
    context.close()


def axes_drawn(page) -> None:
    page.wait_for_function("() => { const g = document.querySelector('[data-testid=graph]'); "
                           "return g.dataset.hooks === 'sync' && g.dataset.axes === 'drawn'; }")


def fitted(page) -> None:
    """The view was fitted at the graph area's current size, and the axes drawn for it."""
    page.wait_for_function("() => { const g = document.querySelector('[data-testid=graph]'); "
                           "const r = g.getBoundingClientRect(); "
                           "return g.dataset.fit === Math.round(r.width) + 'x' + Math.round(r.height); }")
    axes_drawn(page)


def restore(page) -> None:
    page.set_viewport_size(VIEWPORT)
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    fitted(page)


MEASURE = """() => {
  const svg = document.querySelector('[data-testid=graph]');
  const r = svg.getBoundingClientRect();
  const ya = svg.querySelector('.axis-y .axis-bg').getBoundingClientRect();
  const xa = svg.querySelector('.axis-x .axis-bg').getBoundingClientRect();
  const box = b => [b.left, b.top, b.right, b.bottom];
  const nodes = [...svg.querySelectorAll('[data-testid=graph-node]')].map(n =>
    ({pos: +n.dataset.pos, kind: n.dataset.kind, box: box(n.getBoundingClientRect())}));
  const labels = [...svg.querySelectorAll('g.xlabel[data-pos]:not([display])')].map(g =>
    ({pos: +g.dataset.pos, cls: g.getAttribute('class'), box: box(g.getBoundingClientRect())}));
  const mm = document.querySelector('[data-testid=graph-minimap]');
  return {area: [ya.right, r.top, r.right, xa.top], nodes, labels, minimap: !!mm && !mm.hidden,
          target: [...document.querySelectorAll('[data-testid=prediction].active')].map(e => +e.dataset.pos)};
}"""


def measure(page) -> dict:
    return page.evaluate(MEASURE)


def overlap(a, b, tol: float = 0.5) -> bool:
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


def assert_no_overlap(boxes: list, what: str) -> None:
    ordered = sorted(boxes, key=lambda x: x[0][0])
    for i, (a, na) in enumerate(ordered):
        for b, nb in ordered[i + 1:]:
            if b[0] >= a[2]:
                break
            assert not overlap(a, b), f"{what}: {na!r} {a} overlaps {nb!r} {b}"


def drawn_columns(m: dict) -> dict[int, float]:
    """Column centre (screen x) of every token column with a drawn node (FFN squares sit aside)."""
    cols: dict[int, float] = {}
    for n in m["nodes"]:
        if n["kind"] != "ffn":
            cols[n["pos"]] = (n["box"][0] + n["box"][2]) / 2
    return cols


def check_labels(m: dict, must: tuple[int, ...] = ()) -> None:
    labels = m["labels"]
    shown = [x["pos"] for x in labels]
    assert len(shown) == len(set(shown)), "a column has two labels"
    assert_no_overlap([(x["box"], x["pos"]) for x in labels], "token labels")
    for pos in must:
        assert pos in shown, f"the label of position {pos} is not shown"


def test_every_drawn_column_has_one_readable_label(pages):
    for size in PROMPTS:
        page = pages(size)
        m = measure(page)
        left, _, right, _ = m["area"]
        shown = {x["pos"] for x in m["labels"]}
        on_screen = [pos for pos, x in drawn_columns(m).items() if left <= x <= right]
        assert on_screen, f"{size} tokens: no drawn column on screen"
        missing = [pos for pos in on_screen if pos not in shown]
        assert not missing, f"{size} tokens: drawn columns on screen without a label: {missing}"
        target = m["target"][0]
        check_labels(m, must=(target,))
        if not m["minimap"]:  # the whole prompt in view: every column labelled, narrowed ones too
            n_tokens = page.locator("[data-testid=prediction]").count()
            assert shown == set(range(n_tokens)), f"{size} tokens: unlabelled columns {set(range(n_tokens)) - shown}"
        assert "is-target" in next(x["cls"] for x in m["labels"] if x["pos"] == target)
        # a selected node's column (not the target's) keeps its label when zoomed far out
        pos = next(p for p, x in sorted(drawn_columns(m).items(), key=lambda kv: kv[1]) if p != target and left <= x <= right)
        page.locator(f"[data-testid=graph-node][data-pos='{pos}']:not([data-kind=ffn])").first.click()
        page.wait_for_function("p => { const g = document.querySelector(`g.xlabel[data-pos='${p}']`); "
                               "return g && g.classList.contains('is-selected'); }", arg=pos)
        for _ in range(5):
            page.keyboard.press("-")
        axes_drawn(page)
        m = measure(page)
        check_labels(m, must=(target, pos))
        assert "is-selected" in next(x["cls"] for x in m["labels"] if x["pos"] == pos)
        restore(page)


def test_columns_the_route_does_not_touch_keep_their_labels(page, server):
    """The reported case: with "compact" on (the default), the columns without a drawn node are
    narrowed, and " a" lost its label in this prompt. Every column keeps exactly one."""
    page.goto(server + "/")
    page.get_by_test_id("prompt-input").fill("When Mary and John went to the store, John gave a drink to")
    page.get_by_test_id("run-button").click()
    page.locator("[data-testid=graph-edge]").first.wait_for()
    refined(page)
    assert page.get_by_test_id("compact-toggle").is_checked()
    axes_drawn(page)
    m = measure(page)
    tokens = [t.get_attribute("data-token") for t in page.locator("[data-testid=prediction]").all()]
    assert len(drawn_columns(m)) < len(tokens), "every column has a drawn node: nothing is narrowed"
    check_labels(m, must=tuple(range(len(tokens))))
    assert len(m["labels"]) == len(tokens)
    box = next(x["box"] for x in m["labels"] if x["pos"] == tokens.index(" a"))
    assert box[2] - box[0] > 2 and box[3] - box[1] > 2, f"the label of ' a' is empty: {box}"


def check_fit(m: dict, size: int) -> None:
    left, top, right, bottom = m["area"]
    inside = [n["box"] for n in m["nodes"]
              if left <= (n["box"][0] + n["box"][2]) / 2 <= right and top <= (n["box"][1] + n["box"][3]) / 2 <= bottom]
    assert inside, f"{size} tokens: no node in the graph area"
    y0 = min(b[1] for b in inside)
    y1 = max(b[3] for b in inside)
    assert y1 - y0 >= 0.5 * (bottom - top), f"{size} tokens: the route takes {y1 - y0:.0f} of {bottom - top:.0f} px"
    every = [n["box"] for n in m["nodes"]]
    assert min(b[1] for b in every) >= top - 1 and max(b[3] for b in every) <= bottom + 1, "the route leaves the graph area"
    if not m["minimap"]:  # the content fits the width: the whole route is in view
        assert min(b[0] for b in every) >= left - 1 and max(b[2] for b in every) <= right + 1


def test_fit_frames_the_route_at_every_size(pages):
    for size in PROMPTS:
        page = pages(size)
        page.keyboard.press("-")  # move away from the fitted view first: F must bring it back
        page.keyboard.press("f")
        fitted(page)
        check_fit(measure(page), size)
        for viewport in ({"width": 1000, "height": 640}, {"width": 1800, "height": 1150}):
            before = page.get_by_test_id("graph").get_attribute("data-fit")
            page.set_viewport_size(viewport)
            page.wait_for_function("b => document.querySelector('[data-testid=graph]').dataset.fit !== b", arg=before)
            fitted(page)
            check_fit(measure(page), size)
        restore(page)


def test_minimap_of_a_long_prompt_pans_the_view(pages):
    page = pages(650)
    m = measure(page)
    assert m["minimap"]
    short = measure(pages(5))
    assert not short["minimap"], "the minimap is shown while every column is in view"
    strip = page.get_by_test_id("graph-minimap")
    window = page.get_by_test_id("graph-minimap-window")
    before = window.bounding_box()
    assert 0 < before["width"] < strip.bounding_box()["width"]
    assert 0 not in {x["pos"] for x in m["labels"]}
    strip.click(position={"x": 2, "y": 6})
    page.wait_for_function("() => { const g = document.querySelector(\"g.xlabel[data-pos='0']\"); "
                           "return g && !g.hasAttribute('display') && "
                           "document.querySelector('[data-testid=graph]').dataset.axes === 'drawn'; }")
    m = measure(page)
    label = next(x for x in m["labels"] if x["pos"] == 0)
    assert m["area"][0] - 1 <= label["box"][0] and label["box"][2] <= m["area"][2]
    check_labels(m)
    assert window.bounding_box()["x"] < before["x"]
    restore(page)


EXPORT_BOXES = """(text) => {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const el = document.importNode(doc.documentElement, true);
  const holder = document.createElement('div');
  holder.setAttribute('hidden-holder', '');
  document.body.append(holder);
  holder.append(el);
  const root = el.getBoundingClientRect();
  const vb = el.viewBox.baseVal;
  // client boxes: the rotated labels' transforms applied (getBBox() is in each text's own
  // coordinates); the SVG is drawn at its viewBox size, so client px = viewBox units
  const boxes = [...el.querySelectorAll('text')].map(t => {
    const b = t.getBoundingClientRect();
    return [[b.left - root.left, b.top - root.top, b.right - root.left, b.bottom - root.top], t.textContent];
  });
  const paths = [...el.querySelectorAll('path[data-weight]')].map(p =>
    [p.dataset.kind, +p.dataset.weight, +p.getAttribute('stroke-width'), +p.getAttribute('stroke-opacity')]);
  holder.remove();
  return {vb: [vb.width, vb.height], size: [root.width, root.height], boxes, paths};
}"""


def exported(page, tmp_path) -> dict:
    """The SVG the export button downloads (with the app's long title), measured in the page."""
    with page.expect_download() as info:
        page.locator("[data-testid=export-button][data-format=svg]").click()
    path = tmp_path / "graph.svg"
    info.value.save_as(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<?xml")
    return page.evaluate(EXPORT_BOXES, text)


@pytest.mark.parametrize("size", [5, 650])
def test_export_texts_never_overlap_and_stay_inside(pages, size, tmp_path):
    out = exported(pages(size), tmp_path)
    w, h = out["vb"]
    assert out["size"] == pytest.approx([w, h], abs=1)
    boxes = [(b, t) for b, t in out["boxes"] if b[2] > b[0]]
    assert len(boxes) > 10
    for b, t in boxes:
        assert b[0] >= -0.5 and b[1] >= -0.5 and b[2] <= w + 0.5 and b[3] <= h + 0.5, f"{t!r} {b} is outside {w}x{h}"
    assert_no_overlap(boxes, f"exported texts ({size} tokens)")
    texts = [t for _, t in boxes]
    assert "emb" in texts and "L29" in texts
    assert any(t.startswith("routelens ·") for t in texts), "the title is missing"
    assert not any(re.fullmatch(r"L30", t) for t in texts), "a layer named by a node id"


@pytest.mark.parametrize("size", [5, 650])
def test_server_export_texts_never_overlap_and_stay_inside(browser, server, size):
    """GET /api/trace/{id}/export?format=svg (drawing.py, as `routelens trace --out g.svg`), its
    text widths estimated without a browser, measured in one as the app's own export is."""
    body = json.dumps({"model": "smollm2-135m-instruct", "prompt": PROMPTS[size]}).encode()
    post = urllib.request.Request(server + "/api/trace", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(post, timeout=600) as r:
        trace = json.loads(r.read())
    lo, hi = TOKENS[size]
    assert lo <= len(trace["tokens"]) <= hi
    with urllib.request.urlopen(f"{server}/api/trace/{trace['trace_id']}/export?format=svg&threshold=0.04", timeout=600) as r:
        text = r.read().decode("utf-8")
    context = browser.new_context(viewport=VIEWPORT)
    try:
        out = context.new_page().evaluate(EXPORT_BOXES, text)
    finally:
        context.close()
    w, h = out["vb"]
    assert out["size"] == pytest.approx([w, h], abs=1)
    boxes = [(b, t) for b, t in out["boxes"] if b[2] > b[0]]
    assert len(boxes) >= len(trace["tokens"]) + 10  # a label under every column, the title, the legend, the layers
    for b, t in boxes:
        assert b[0] >= -0.5 and b[1] >= -0.5 and b[2] <= w + 0.5 and b[3] <= h + 0.5, f"{t!r} {b} is outside {w}x{h}"
    assert_no_overlap(boxes, f"the server's exported texts ({size} tokens)")
    texts = [t for _, t in boxes]
    assert "emb" in texts and "L29" in texts and any(": route " in t for t in texts), "the title or a layer is missing"


def test_edge_strokes_follow_the_weight_over_the_range(pages, tmp_path):
    page = pages(40)
    out = exported(page, tmp_path)
    paths = out["paths"]
    hooks = page.locator("[data-testid=graph-edge]").evaluate_all("els => els.map(e => [e.dataset.kind, +e.dataset.weight])")
    assert sorted((k, w) for k, w, _, _ in paths) == sorted((k, w) for k, w in hooks), "the export draws other edges"
    by_kind: dict[str, list] = {}
    for kind, w, width, opacity in paths:
        by_kind.setdefault(kind, []).append((w, width, opacity))
    assert {"attn", "resid"} <= set(by_kind)
    for kind, rows in by_kind.items():
        rows.sort()
        for (w0, s0, o0), (w1, s1, o1) in zip(rows, rows[1:]):
            assert s1 >= s0 - 1e-6 and o1 >= o0 - 1e-6, f"{kind}: weight {w1} drawn lighter than {w0}"
        (wa, sa, oa), (wb, sb, ob) = rows[0], rows[-1]
        if wb - wa > 0.2:
            # opacity spans the range (more than half of the weight difference); width grows by
            # more than 1.5 px per unit of sqrt(weight) (a 2-3 px span over 0..1 hides 0.5 vs 1)
            assert ob - oa >= 0.5 * (wb - wa), f"{kind}: opacity {oa}..{ob} for weights {wa}..{wb}"
            assert sb - sa >= 1.5 * (wb ** 0.5 - wa ** 0.5), f"{kind}: width {sa}..{sb} for weights {wa}..{wb}"
        assert sa >= 0.5 and oa >= 0.1, f"{kind}: the lightest edge (weight {wa}) is {sa} wide at opacity {oa}"
    # residual: lighter and no wider than attention of the same weight or more
    attn = by_kind["attn"]
    for w, width, opacity in by_kind["resid"]:
        heavier = [(s, o) for wa, s, o in attn if wa >= w]
        for s, o in heavier:
            assert opacity < o and width <= s + 1e-6, f"residual {w} ({width}, {opacity}) vs attention ({s}, {o})"


def test_tooltips_and_layer_axis_use_the_layer_numbering(pages):
    page = pages(5)
    page.locator("[data-testid=graph-node].target").hover()
    tip = page.locator(".tooltip")
    tip.wait_for(state="visible")
    assert tip.locator(".tt-title").inner_text() == "block output · L29 out"
    assert "id x:30:4" in tip.inner_text()
    page.locator("[data-testid=graph-edge][data-kind=attn]").last.hover()
    page.wait_for_function("() => document.querySelector('.tooltip .tt-title').textContent.startsWith('attention edge')")
    title = tip.locator(".tt-title").inner_text()
    assert re.fullmatch(r"attention edge · L(\d+): (emb|L\d+ out) → L\1 attn", title), title
    layers = page.locator("[data-testid=graph] .ylabel:not([display])").evaluate_all("els => els.map(e => e.textContent)")
    assert "emb" in layers and "L29" in layers and all(re.fullmatch(r"L\d+|emb", t) for t in layers)
    assert len({int(t[1:]) for t in layers if t != "emb"}) >= 10
    page.mouse.move(5, 5)
    restore(page)


def test_a_route_to_every_position_marks_every_target(browser, smollm2, tmp_path):
    """target "all" (graph JSON target.pos null): every root's column is a target, drawn by the
    standalone viewer (the same GraphView as the app)."""
    graph = smollm2.trace(PROMPTS[5]).graph(target="all").to_dict()
    assert graph["target"]["pos"] is None and len(graph["target"]["positions"]) == 5
    js = script_safe(VIEWER_JS.read_text(encoding="utf-8"))
    html = ('<!doctype html><html><head><meta charset="utf-8"></head><body><div id="rl"></div>'
            f"<script>{js}</script>"
            f'<script>routelensViewer.mount(document.getElementById("rl"), {script_safe(json.dumps(graph))})</script>'
            "</body></html>")
    path = tmp_path / "all.html"
    path.write_text(html, encoding="utf-8")
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(path.as_uri())
        page.locator("[data-testid=graph-edge]").first.wait_for()
        axes_drawn(page)
        marks = page.locator("[data-testid=graph] .target-mark").evaluate_all("els => els.map(e => +e.dataset.pos)")
        assert sorted(marks) == graph["target"]["positions"]
        targets = page.locator("[data-testid=graph-node].target").evaluate_all("els => els.map(e => +e.dataset.pos)")
        assert sorted(targets) == graph["target"]["positions"]
        labels = page.locator("g.xlabel.is-target:not([display])").evaluate_all("els => els.map(e => +e.dataset.pos)")
        assert sorted(labels) == graph["target"]["positions"]
        check_fit(measure(page), 5)
    finally:
        context.close()
