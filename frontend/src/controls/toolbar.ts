// The graph toolbar: the threshold controls, the legend, fit and zoom, the exports, Open… (a
// route-graph JSON file) and fullscreen.

import { legend } from "../graph/legend";
import type { GraphView } from "../graph/view";
import { h, icon } from "../ui/dom";
import type { ThresholdControl } from "./threshold";

export interface ToolbarHooks {
  threshold: ThresholdControl;
  view(): GraphView;
  exportAs(fmt: "json" | "svg" | "png"): void;
  openFile(f: File): void;
  fullscreen(): void;
}

/** Fullscreen for one panel (or back). */
export function toggleFullscreen(el: HTMLElement): void {
  if (document.fullscreenElement) document.exitFullscreen();
  else el.requestFullscreen?.().catch(() => {});
}

export function graphToolbar(o: ToolbarHooks): HTMLElement {
  const fileInput = h("input", { type: "file", accept: ".json,application/json", hidden: true, "data-testid": "open-file-input", "aria-label": "open a route-graph JSON file" });
  fileInput.addEventListener("change", () => {
    const f = fileInput.files?.[0];
    fileInput.value = "";
    if (f) o.openFile(f);
  });
  const exportBtn = (fmt: "json" | "svg" | "png", label: string) =>
    h("button", { class: "btn small", "data-testid": "export-button", "data-format": fmt, title: `download the drawn route as ${label}`, onclick: () => o.exportAs(fmt) }, label);
  return h(
    "div",
    { class: "graph-toolbar" },
    o.threshold.el,
    o.threshold.counts,
    o.threshold.compactEl,
    h("div", { class: "spacer" }),
    legend(),
    h(
      "div",
      { class: "btn-group" },
      h("button", { class: "icon-btn", title: "fit the whole route (F)", onclick: () => o.view().fit() }, icon("fit")),
      h("button", { class: "icon-btn", title: "zoom out (-)", onclick: () => o.view().zoomBy(1 / 1.4) }, "−"),
      h("button", { class: "icon-btn", title: "zoom in (+)", onclick: () => o.view().zoomBy(1.4) }, "+"),
    ),
    h("div", { class: "btn-group" }, h("span", { class: "muted small" }, "Export"), exportBtn("json", "JSON"), exportBtn("svg", "SVG"), exportBtn("png", "PNG")),
    h(
      "button",
      { class: "btn small", "data-testid": "open-file", title: "open a route-graph JSON exported by routelens (JSON export, or `routelens trace ... --out x.json`); you can also drop the file on the graph", onclick: () => fileInput.click() },
      "Open…",
    ),
    fileInput,
    h("button", { class: "icon-btn", title: "fullscreen", onclick: () => o.fullscreen() }, icon("fullscreen")),
  );
}
