// The dataset view's layers x heads heatmap: one cell per head (data-layer, data-head,
// data-value), the last layer on top as in the route graph, a sequential colour scale (viridis:
// ordered from dark to light, readable with any colour vision) and its legend.

import { layerName } from "../layers";
import { h } from "../ui/dom";

type RGB = [number, number, number];

const VIRIDIS: RGB[] = [
  [68, 1, 84],
  [72, 40, 120],
  [62, 74, 137],
  [49, 104, 142],
  [38, 130, 142],
  [31, 158, 137],
  [53, 183, 121],
  [109, 205, 89],
  [180, 222, 44],
  [253, 231, 37],
];

/** The scale's colour at t in 0..1. */
export function colourAt(t: number): string {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + (VIRIDIS[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** A number for a cell's title and the legend. */
export function fmt(v: number): string {
  if (v === 0) return "0";
  return Math.abs(v) >= 0.01 ? v.toFixed(3) : v.toExponential(2);
}

export interface HeatmapOpts {
  values: number[][];
  /** The value drawn in the scale's last colour. */
  max: number;
  /** What a value is, for the titles: "mean importance per route". */
  what: string;
  selected: { layer: number; head: number } | null;
  pick(layer: number, head: number): void;
}

export function heatmap(o: HeatmapOpts): HTMLElement {
  const nHeads = o.values[0]?.length ?? 0;
  const max = o.max > 0 ? o.max : 1;
  const cell = (layer: number, head: number, v: number) => {
    const on = o.selected?.layer === layer && o.selected?.head === head;
    return h("button", {
      class: "ds-cell" + (on ? " is-selected" : ""),
      "data-testid": "dataset-cell",
      "data-layer": layer,
      "data-head": head,
      "data-value": v,
      "aria-pressed": on ? "true" : "false",
      style: `background:${colourAt(v / max)}`,
      title: `${layerName(layer)} head ${head}: ${o.what} ${fmt(v)}\nclick: the prompts where it mattered most`,
      onclick: () => o.pick(layer, head),
    });
  };
  const rows = o.values
    .map((row, layer) => [h("div", { class: "ds-rowhead" }, layerName(layer)), ...row.map((v, head) => cell(layer, head, v))])
    .reverse(); // the last layer on top, as in the graph
  const cols = [h("div"), ...Array.from({ length: nHeads }, (_, i) => h("div", { class: "ds-colhead" }, `h${i}`))];
  return h(
    "div",
    { class: "ds-grid", "data-testid": "dataset-heatmap", "data-max": max, style: `grid-template-columns: 36px repeat(${nHeads}, minmax(16px, 28px))` },
    cols,
    rows,
  );
}

/** The colour scale: a bar from 0 to `max`, named by what it measures. */
export function legend(max: number, what: string): HTMLElement {
  const stops = VIRIDIS.map((_, i) => colourAt(i / (VIRIDIS.length - 1))).join(", ");
  return h(
    "div",
    { class: "ds-legend", "data-testid": "dataset-legend", "data-max": max },
    h("span", { class: "muted small" }, what),
    h("span", { class: "ds-legend-end" }, "0"),
    h("span", { class: "ds-legend-bar", style: `background: linear-gradient(to right, ${stops})` }),
    h("span", { class: "ds-legend-end" }, fmt(max)),
  );
}
