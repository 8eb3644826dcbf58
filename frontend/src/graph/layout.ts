// Where nodes go: tokens left to right (one column per position, columns the route never
// touches narrowed), layers bottom to top (embedding row at the bottom; per layer a row for the
// node after attention and one for the block output, the FFN square between them, to the right).

import type { Prepared, PNode, PEdge } from "./prune";
import { clamp } from "../ui/dom";

export interface Layout {
  colX: Float64Array; // centre of each token column
  colW: Float64Array;
  used: Uint8Array;
  rowH: number;
  nLevels: number;
  width: number;
  height: number;
  top: number;
  ffnDx: number;
  nodeR: number;
  parallel: boolean;
  nLayers: number;
}

export const MARGIN = { left: 52, right: 24, top: 24, bottom: 46 };

export function levelOf(kind: string, layer: number, parallel: boolean): number {
  if (kind === "embed") return 0;
  if (parallel) return kind === "ffn" ? layer + 0.5 : layer + 1;
  if (kind === "attn") return 2 * layer + 1;
  if (kind === "ffn") return 2 * layer + 1.5;
  return 2 * layer + 2; // block
}

/** `keep`: the nodes that count when deciding which columns are narrowed (default: all). */
export function makeLayout(p: Prepared, nTokens: number, viewW: number, viewH: number, keep?: Uint8Array): Layout {
  const used = new Uint8Array(nTokens);
  for (const n of p.nodes) if (n.pos >= 0 && n.pos < nTokens && (!keep || keep[n.idx])) used[n.pos] = 1;
  const nUsed = Math.max(1, used.reduce((a, b) => a + b, 0));
  const narrow = 16; // room for a rotated token label (graph/labels.ts) at the fitted zoom
  const availW = Math.max(300, viewW - MARGIN.left - MARGIN.right) - (nTokens - nUsed) * narrow;
  const wide = clamp(availW / nUsed, 46, 150);
  const colW = new Float64Array(nTokens);
  const colX = new Float64Array(nTokens);
  let x = MARGIN.left;
  for (let i = 0; i < nTokens; i++) {
    colW[i] = used[i] ? wide : narrow;
    colX[i] = x + colW[i] / 2;
    x += colW[i];
  }
  const parallel = p.parallel;
  const nLevels = parallel ? p.nLayers + 1 : 2 * p.nLayers + 1;
  const availH = Math.max(200, viewH - MARGIN.top - MARGIN.bottom);
  // when the columns are a bit too wide for the view, the fit scales everything down: make the
  // rows taller in proportion so the scaled drawing still fills the height
  const kx = Math.max(300, viewW - MARGIN.left - MARGIN.right) / Math.max(1, x - MARGIN.left);
  const stretch = kx < 1 && kx >= 0.5 ? 1 / kx : 1;
  const rowH = clamp((availH / Math.max(1, nLevels - 1)) * stretch, 9, 34 * stretch);
  const height = MARGIN.top + (nLevels - 1) * rowH + MARGIN.bottom;
  return {
    colX,
    colW,
    used,
    rowH,
    nLevels,
    width: x + MARGIN.right,
    height,
    top: MARGIN.top,
    ffnDx: Math.min(wide * 0.3, 16),
    nodeR: clamp(rowH * 0.36, 3, 5),
    parallel,
    nLayers: p.nLayers,
  };
}

export function levelY(l: Layout, level: number): number {
  return l.top + (l.nLevels - 1 - level) * l.rowH;
}

export function nodeXY(l: Layout, n: PNode): [number, number] {
  const x = l.colX[n.pos] + (n.kind === "ffn" ? l.ffnDx : 0);
  return [x, levelY(l, levelOf(n.kind, n.layer, l.parallel))];
}

const f = (x: number) => Math.round(x * 10) / 10;

/** SVG path data of an edge: `vis` is drawn, `hit` is the wide invisible click target. */
export function edgePath(l: Layout, p: Prepared, e: PEdge): { vis: string; hit: string } {
  const [x1, y1] = nodeXY(l, p.nodes[e.s]);
  const [x2, y2] = nodeXY(l, p.nodes[e.t]);
  if (e.kind === "attn") {
    if (Math.abs(x1 - x2) < 0.5) {
      // self edge through attention: bowed to the left so it never hides the residual edge
      const k = Math.min(12, l.colW[p.nodes[e.s].pos] * 0.25);
      const d = `M${f(x1)},${f(y1)}C${f(x1 - k)},${f(y1 - (y1 - y2) * 0.2)} ${f(x2 - k)},${f(y2 + (y1 - y2) * 0.2)} ${f(x2)},${f(y2)}`;
      return { vis: d, hit: d };
    }
    const ym = (y1 + y2) / 2;
    const d = `M${f(x1)},${f(y1)}C${f(x1)},${f(ym)} ${f(x2)},${f(ym)} ${f(x2)},${f(y2)}`;
    return { vis: d, hit: d };
  }
  const d = `M${f(x1)},${f(y1)}L${f(x2)},${f(y2)}`;
  // a perfectly vertical path has an empty bounding box; lean the hit path by a hair so the
  // element has a size (browsers and test drivers treat empty boxes as invisible)
  const hit = Math.abs(x1 - x2) < 0.5 ? `M${f(x1 - 0.6)},${f(y1)}L${f(x2 + 0.6)},${f(y2)}` : d;
  return { vis: d, hit };
}
