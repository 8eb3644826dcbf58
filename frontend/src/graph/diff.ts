// Two routes in one drawing (a comparison graph, docs/graph-format.md "Comparison graphs"): each
// edge carries weight_a, weight_b and delta = weight_b - weight_a, and is coloured by the sign
// of delta (blue where route A weighs it more, vermillion where route B does, grey when |delta|
// is under UNCHANGED), as the Python export does (export/drawing.py); the width is `weight`, the
// larger of the two. And a marked tail of the token axis (e.g. tokens the model generated).
// Nothing here knows a model.

import type { GEdge, Graph } from "../types";
import { svg } from "../ui/dom";
import { COLORS } from "./style";
import { type Layout, levelY } from "./layout";

export const DIFF_COLORS = { a: "#0072B2", b: "#D55E00", same: "#9AA5B1" };
/** |delta| below this (importance units, 0..1) draws as unchanged. */
export const UNCHANGED = 0.005;

export type DiffEdge = GEdge & { weight_a?: number; weight_b?: number; delta?: number };

/** The edge's delta, or null when it is not an edge of a comparison. */
export function deltaOf(e: GEdge): number | null {
  const d = (e as DiffEdge).delta;
  return typeof d === "number" && Number.isFinite(d) ? d : null;
}

/** 0: not a comparison edge (coloured by kind); 1: stronger in A; 2: stronger in B; 3: unchanged. */
export function diffClass(e: GEdge): number {
  const d = deltaOf(e);
  if (d === null) return 0;
  return Math.abs(d) < UNCHANGED ? 3 : d > 0 ? 2 : 1;
}

export const DIFF_CLASS_COLOR = ["", DIFF_COLORS.a, DIFF_COLORS.b, DIFF_COLORS.same];

/** The colour an edge is drawn in: its kind's, or a comparison's by the sign of its delta. */
export function edgeColorOf(e: GEdge): string {
  const c = diffClass(e);
  return c ? DIFF_CLASS_COLOR[c] : COLORS[e.kind];
}

/** A comparison graph: its edges are coloured by delta. */
export function isDiff(g: Graph | null | undefined): boolean {
  return !!g && ("compare" in g || g.edges.some((e) => deltaOf(e) !== null));
}

/** The legend's labels of a comparison's colours (as the Python export names them). */
export const DIFF_LEGEND: [string, string][] = [
  ["stronger in A", DIFF_COLORS.a],
  ["stronger in B", DIFF_COLORS.b],
  ["unchanged", DIFF_COLORS.same],
];

/** Background marks of the tail of the token axis from column `from` on: a tint over its columns
 * and a line at the boundary (rects: the canvas paints the bands group's rects, the export copies them). */
export function tailRects(L: Layout, from: number): SVGElement[] {
  const T = L.colX.length;
  if (from <= 0 || from >= T) return [];
  const x = L.colX[from] - L.colW[from] / 2;
  const x2 = L.colX[T - 1] + L.colW[T - 1] / 2;
  const y1 = levelY(L, L.nLevels - 1) - L.rowH / 2;
  const y2 = levelY(L, 0) + L.rowH / 2;
  return [
    svg("rect", { x, y: y1, width: x2 - x, height: y2 - y1, fill: "#FCEFD9", opacity: 0.55, "data-tail": "band" }),
    svg("rect", { x: x - 0.75, y: y1 - 6, width: 1.5, height: y2 - y1 + 6, fill: "#B26B00", opacity: 0.8, "data-tail": "boundary" }),
  ];
}
