// How the route graph looks, shared by the canvas painter, the hook elements, the legend and the
// SVG export: colours by kind (Okabe-Ito, colour-blind safe), the edge weight -> stroke mapping
// and the node looks.

import type { EdgeKind } from "../types";
import { clamp } from "../ui/dom";

export const COLORS = {
  attn: "#0072B2",
  ffn: "#CC79A7",
  resid: "#6F7A86",
  block: "#2F3A48",
  embed: "#7B8490",
  sel: "#E69F00",
  target: "#E69F00",
};

/** Stroke of an edge of weight w (0..1): width in pixels at scale 1 (screen pixels in the live
 * view, graph units in the export) and opacity, both over the whole range (ui-notes.md "Visual
 * encoding"). Residual edges are thinner and lighter than attention and FFN edges of the same
 * weight: visible, but under them. */
export function edgeStyle(kind: EdgeKind, w: number): { width: number; opacity: number } {
  const c = clamp(w, 0, 1);
  const s = Math.sqrt(c);
  if (kind === "resid") return { width: 0.5 + 2.2 * s, opacity: 0.12 + 0.6 * c };
  return { width: 0.5 + 3 * s, opacity: 0.15 + 0.85 * c };
}

/** Node looks (radius in units of the layout's nodeR); index = look id (lookId), + NODE_LOOKS
 * when the node is degenerate (dashed outline). */
export const NODE_LOOK = [
  { round: true, r: 1, rx: 0, fill: COLORS.block, stroke: "#FFFFFF", sw: 1 }, // block
  { round: true, r: 1.35, rx: 0, fill: COLORS.block, stroke: COLORS.target, sw: 2.5 }, // a target's block
  { round: true, r: 0.85, rx: 0, fill: "#FFFFFF", stroke: COLORS.attn, sw: 1.6 }, // after attention
  { round: false, r: 0.85, rx: 1.5, fill: COLORS.ffn, stroke: "#FFFFFF", sw: 1 }, // FFN
  { round: false, r: 1, rx: 2, fill: COLORS.embed, stroke: "#FFFFFF", sw: 1 }, // embedding
];
export const NODE_LOOKS = NODE_LOOK.length;
export type NodeLook = (typeof NODE_LOOK)[number];

/** The look id of a node of `kind` (`target`: the block output a route starts from). */
export function lookId(kind: string, target: boolean): number {
  return kind === "block" ? (target ? 1 : 0) : kind === "attn" ? 2 : kind === "ffn" ? 3 : 4;
}

export const KIND_NAME: Record<string, string> = {
  embed: "embedding",
  attn: "after attention",
  ffn: "FFN",
  block: "block output",
};

export const EDGE_NAME: Record<EdgeKind, string> = { attn: "attention", resid: "residual", ffn: "FFN" };
