// The standalone SVG export of the drawn route (inline styles, no CSS, no scripts; the PNG is
// rendered from it). Laid out top to bottom so that nothing overlaps at any size: the title on
// its own line(s) (wrapped to the width, the full text in <title>), the legend on lines that fit,
// the drawing, the token labels under it by the axis rule (labels.ts, in graph units) and the
// layer labels left of it, one per block output row ("L<l>", "emb") where they do not collide.

import type { EdgeKind } from "../types";
import { svg } from "../ui/dom";
import { layerName } from "../layers";
import { MARGIN, edgePath, levelOf, levelY } from "./layout";
import { MONO, POS_SIZE, SANS, SMALL_SIZE, TOK_SIZE, UPRIGHT_POS, fitText, planLayerLabels, planTokenLabels, textWidth, type ColumnSpot } from "./labels";
import type { Scene } from "./scene";
import { COLORS, NODE_LOOK, edgeStyle, lookId } from "./style";
import { DIFF_CLASS_COLOR, DIFF_LEGEND, deltaOf, diffClass, isDiff } from "./diff";
import { nodeXY } from "./layout";

const PAD = 12;
const TITLE_SIZE = 13;
const TITLE_LINE = 18;
const TITLE_LINES = 3;
const LEGEND_SIZE = 11;
const LEGEND_LINE = 17;
const MIN_W = 360;
const AXIS_H = 46; // under the drawing: the token labels

/** The title cut into lines of at most `maxW` px (words kept whole where they fit). */
function wrap(title: string, maxW: number): string[] {
  const fits = (t: string) => textWidth(t, TITLE_SIZE, SANS, "600") <= maxW;
  const lines: string[] = [];
  let line = "";
  for (const word of title.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (fits(next)) line = next;
    else {
      if (line) lines.push(line);
      line = fits(word) ? word : fitText(word, TITLE_SIZE, SANS, maxW, Infinity, "600");
    }
  }
  if (line) lines.push(line);
  if (lines.length > TITLE_LINES) {
    const kept = lines.slice(0, TITLE_LINES);
    kept[TITLE_LINES - 1] = fitText(kept[TITLE_LINES - 1] + " …", TITLE_SIZE, SANS, maxW, Infinity, "600");
    return kept;
  }
  return lines;
}

function text(x: number, y: number, content: string, attrs: Record<string, string | number>): SVGTextElement {
  const t = svg("text", { x, y, ...attrs });
  t.textContent = content;
  return t;
}

export function exportSvg(s: Scene, bands: SVGGElement, marks: SVGGElement, title: string): { text: string; width: number; height: number } {
  const L = s.layout!;
  const p = s.p!;
  const W = Math.max(MIN_W, Math.ceil(L.width));
  const root = svg("svg", { xmlns: "http://www.w3.org/2000/svg", "font-family": SANS, "font-size": LEGEND_SIZE });
  const full = svg("title");
  full.textContent = title;
  root.append(full);
  const body: Element[] = [];
  // title
  let y = PAD;
  for (const line of wrap(title, W - 2 * PAD)) {
    y += TITLE_LINE;
    body.push(text(PAD, y - 5, line, { "font-size": TITLE_SIZE, fill: "#1F2933", "font-weight": 600 }));
  }
  // legend: mark + label items, wrapped to the width
  type Item = [string, (x: number, yc: number) => Element];
  const items: Item[] = [
    ["attention", (x, yc) => svg("line", { x1: x, y1: yc, x2: x + 16, y2: yc, stroke: COLORS.attn, "stroke-width": 3 })],
    ["residual", (x, yc) => svg("line", { x1: x, y1: yc, x2: x + 16, y2: yc, stroke: COLORS.resid, "stroke-width": 1.5 })],
    ["FFN", (x, yc) => svg("line", { x1: x, y1: yc, x2: x + 16, y2: yc, stroke: COLORS.ffn, "stroke-width": 3 })],
    ["block output", (x, yc) => svg("circle", { cx: x + 8, cy: yc, r: 4.5, fill: COLORS.block })],
    ["after attention", (x, yc) => svg("circle", { cx: x + 8, cy: yc, r: 4, fill: "#FFFFFF", stroke: COLORS.attn, "stroke-width": 1.6 })],
    ["FFN node", (x, yc) => svg("rect", { x: x + 4, y: yc - 4, width: 8, height: 8, rx: 1.5, fill: COLORS.ffn })],
    ["embedding", (x, yc) => svg("rect", { x: x + 4, y: yc - 4, width: 8, height: 8, rx: 2, fill: COLORS.embed })],
    ["target", (x, yc) => svg("path", { d: `M${x + 3},${yc - 4}L${x + 13},${yc - 4}L${x + 8},${yc + 3}Z`, fill: COLORS.target })],
  ];
  // a comparison: its colours instead of the edge kinds' (as export/drawing.py)
  const diff = isDiff(p.graph);
  if (diff) items.splice(0, 3, ...DIFF_LEGEND.map(([label, c]): Item => [label, (x, yc) => svg("line", { x1: x, y1: yc, x2: x + 16, y2: yc, stroke: c, "stroke-width": 3 })]));
  let x = PAD;
  y += LEGEND_LINE;
  for (const [label, mark] of items) {
    const w = 20 + textWidth(label, LEGEND_SIZE, SANS) + 14;
    if (x > PAD && x + w - 14 > W - PAD) {
      x = PAD;
      y += LEGEND_LINE;
    }
    body.push(mark(x, y - 4), text(x + 20, y, label, { fill: "#3E4C59" }));
    x += w;
  }
  const head = y + 8;
  const g = svg("g", { transform: `translate(0,${head})` });
  const strip = (el: Element) => {
    const c = el.cloneNode(true) as Element;
    for (const x of [c, ...Array.from(c.querySelectorAll("*"))]) {
      for (const a of Array.from(x.attributes)) if (a.name === "class" || a.name.startsWith("data-")) x.removeAttribute(a.name);
    }
    return c;
  };
  g.append(strip(bands));
  // the live view paints edges on a canvas: SVG strokes for the export only, by the same mapping
  const shownE = s.pr ? s.pr.edgeList : [];
  for (const kind of ["resid", "ffn", "attn"] as EdgeKind[]) {
    const eg = svg("g");
    for (const i of shownE) {
      const e = p.edges[i];
      if (e.kind !== kind) continue;
      const st = edgeStyle(e.kind, e.weight);
      const delta = deltaOf(e);
      eg.append(
        svg("path", {
          d: edgePath(L, p, e).vis,
          "stroke-width": st.width.toFixed(2),
          "stroke-opacity": st.opacity.toFixed(3),
          fill: "none",
          stroke: diff && delta !== null ? DIFF_CLASS_COLOR[diffClass(e)] : COLORS[kind],
          "stroke-linecap": "round",
          "data-weight": String(e.weight),
          "data-kind": e.kind,
          ...(delta !== null ? { "data-delta": String(delta), "data-source": e.source, "data-target": e.target } : {}),
        }),
      );
    }
    g.append(eg);
  }
  const gn = svg("g");
  for (const i of s.pr ? s.pr.nodeList : []) {
    const n = p.nodes[i];
    const lk = NODE_LOOK[lookId(n.kind, s.isTarget(i))];
    const [cx, cy] = nodeXY(L, n);
    const r = lk.r * L.nodeR;
    const paint = { fill: lk.fill, stroke: lk.stroke, "stroke-width": lk.sw, ...(n.degenerate ? { "stroke-dasharray": "2 1.5" } : {}) };
    gn.append(lk.round ? svg("circle", { cx, cy, r, ...paint }) : svg("rect", { x: cx - r, y: cy - r, width: 2 * r, height: 2 * r, rx: lk.rx, ...paint }));
  }
  g.append(gn, strip(marks));
  // layer labels, left of the drawing
  const rows = [{ y: levelY(L, 0), text: layerName(-1) }];
  for (let l = L.nLayers - 1; l >= 0; l--) rows.push({ y: levelY(L, levelOf("block", l, L.parallel)), text: layerName(l) });
  for (const r of planLayerLabels(rows, 12)) g.append(text(MARGIN.left - 12, r.y + 3.5, r.text, { "text-anchor": "end", fill: "#616E7C", "font-size": 10 }));
  // token labels, under the drawing
  const by = levelY(L, 0) + L.rowH / 2 + 4;
  const cols: ColumnSpot[] = Array.from(L.colX, (cx, i) => ({ pos: i, x: cx, w: L.colW[i] }));
  for (const l of planTokenLabels(cols, s.tokens, s.targets, s.routeColumns() ?? new Uint8Array(L.colX.length), AXIS_H - 6)) {
    const target = s.targetCols[l.pos] === 1;
    const ink = { fill: target ? "#B26B00" : "#1F2933", "font-weight": target ? 700 : 400, "font-family": MONO };
    if (l.compact) {
      // (an upright label, the position over the rotated token, needs a route column narrower than
      // the export's scale-1 layout ever makes: drawn here the same way as on screen all the same)
      if (l.upright) g.append(text(l.x, by + 10, String(l.pos), { "text-anchor": "middle", fill: target ? "#B26B00" : "#9AA5B1", "font-size": POS_SIZE, "font-family": SANS }));
      const y = by + 2 + (l.upright ? UPRIGHT_POS : 0);
      g.append(text(0, 0, l.text, { ...ink, transform: `translate(${l.x.toFixed(1)},${y}) rotate(-90)`, "text-anchor": "end", "dominant-baseline": "central", "font-size": SMALL_SIZE }));
    } else {
      g.append(
        text(l.x, by + 10, String(l.pos), { "text-anchor": "middle", fill: target ? "#B26B00" : "#9AA5B1", "font-size": POS_SIZE, "font-family": SANS }),
        text(l.x, by + 25, l.text, { ...ink, "text-anchor": "middle", "font-size": TOK_SIZE }),
      );
    }
  }
  const H = Math.ceil(head + by + AXIS_H);
  root.setAttribute("width", String(W));
  root.setAttribute("height", String(H));
  root.setAttribute("viewBox", `0 0 ${W} ${H}`);
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#FFFFFF" }), ...body, g);
  const out = '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(root);
  return { text: out, width: W, height: H };
}
