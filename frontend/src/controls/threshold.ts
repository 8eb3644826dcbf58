// The threshold controls: a slider and a number box (both follow the view store's threshold),
// the live counts of what is drawn and hidden, and the compact-columns switch.

import { listenKeys } from "nanostores";
import type { Prepared, Pruned } from "../graph/prune";
import { $view } from "../state";
import { clamp, fill, h, num } from "../ui/dom";

export const SLIDER_MAX = 0.3;
const EDGE_WARN = 20000;

export interface ThresholdHooks {
  /** The user moved the slider (`dragging`: while it moves) or typed a value. */
  apply(tau: number, dragging: boolean): void;
  setCompact(on: boolean): void;
  compact: boolean;
  min: number;
}

export class ThresholdControl {
  readonly el: HTMLLabelElement;
  readonly counts: HTMLSpanElement;
  readonly compactEl: HTMLLabelElement;
  private slider: HTMLInputElement;
  private input: HTMLInputElement;
  private compactBox: HTMLInputElement;

  constructor(o: ThresholdHooks) {
    this.slider = h("input", {
      type: "range",
      "data-testid": "threshold-slider",
      min: String(o.min),
      max: String(SLIDER_MAX),
      step: "0.001",
      value: "0.04",
      "aria-label": "threshold",
      title: "edges lighter than this are hidden ([ and ] step it)",
    });
    // while dragging, redraw at most once per frame (a big route can take longer than a frame)
    let pending = false;
    this.slider.addEventListener("input", () => {
      this.input.value = String(+Number(this.slider.value).toFixed(4));
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        o.apply(Number(this.slider.value), true);
      });
    });
    this.slider.addEventListener("change", () => o.apply(Number(this.slider.value), false));
    this.input = h("input", { type: "number", class: "th-input", "data-testid": "threshold-input", min: String(o.min), max: "1", step: "0.001", "aria-label": "threshold value" });
    this.input.addEventListener("change", () => {
      const v = Number(this.input.value);
      if (Number.isFinite(v)) o.apply(v, false);
    });
    this.el = h("label", { class: "th-field" }, h("span", { class: "field-label" }, "Threshold"), this.slider, this.input);
    this.counts = h("span", { class: "counts muted small", "data-testid": "graph-counts" });
    this.compactBox = h("input", { type: "checkbox", "data-testid": "compact-toggle", checked: o.compact });
    this.compactBox.addEventListener("change", () => o.setCompact(this.compactBox.checked));
    this.compactEl = h("label", { class: "check small", title: "narrow the token columns that the drawn route does not touch" }, this.compactBox, " compact");
    this.show($view.get().threshold);
    listenKeys($view, ["threshold"], (v) => this.show(v.threshold));
  }

  /** The lowest threshold offered: `min` (the slider's end moves to 1 when min is above SLIDER_MAX). */
  setRange(min: number): void {
    this.slider.min = String(min);
    this.slider.max = String(min < SLIDER_MAX ? SLIDER_MAX : 1);
    this.input.min = String(min);
    this.show($view.get().threshold);
  }

  setCompact(on: boolean): void {
    this.compactBox.checked = on;
  }

  show(tau: number): void {
    this.slider.value = String(clamp(tau, Number(this.slider.min), Number(this.slider.max)));
    this.input.value = String(+tau.toFixed(4));
  }

  /** What is drawn of the fetched route `p` at `pr`, and what is hidden or still to come. */
  renderCounts(p: Prepared | null, pr: Pruned | null, o: { waitingRefine: boolean; drawPending: boolean } = { waitingRefine: false, drawPending: false }): void {
    if (!p || !pr) {
      this.counts.textContent = "";
      return;
    }
    const hiddenE = p.edges.length - pr.edgeList.length;
    const hiddenN = p.nodes.length - pr.nodeList.length;
    fill(
      this.counts,
      h("b", null, pr.nodeList.length.toLocaleString("en-US")),
      " nodes · ",
      h("b", null, pr.edgeList.length.toLocaleString("en-US")),
      " edges",
      hiddenE > 0 || hiddenN > 0
        ? h("span", { class: "hidden-count", title: `the route was fetched at threshold ${p.graph.threshold}; lower the slider to draw what is hidden` }, ` · hidden below threshold: ${hiddenN.toLocaleString("en-US")} nodes, ${hiddenE.toLocaleString("en-US")} edges`)
        : null,
      o.waitingRefine ? h("span", { class: "pending" }, ` · drawn at ${num(p.graph.threshold, 4)} until the finer route is here`) : null,
      o.drawPending ? h("span", { class: "pending" }, " · drawing when the slider rests…") : null,
      pr.edgeList.length > EDGE_WARN ? h("span", { class: "warn" }, ` · ${pr.edgeList.length.toLocaleString("en-US")} edges drawn: panning may be slow, raise the threshold`) : null,
    );
    this.counts.title = this.counts.textContent ?? ""; // the line may be cut with an ellipsis (graph.css)
  }
}
