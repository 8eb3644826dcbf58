// routelens standalone viewer: one route graph (routelens.graph/2 or /1) drawn with the web app's own
// drawing code (graph/view.ts, graph/prune.ts, graph/layout.ts), with no server and no network.
// Built by `npm run build` (vite.viewer.config.ts) into routelens/server/static/viewer/viewer.js:
// one classic script (IIFE, no imports, no fetch), its CSS inside it (added to the page once, as
// a <style data-routelens-viewer>, every rule scoped under the viewer's root class .rlv).
//
// CONTRACT (what the Python HTML export and the notebook view rely on; keep it):
//
//   <div id="rl"></div>
//   <script>{viewer.js}</script>
//   <script>routelensViewer.mount(document.getElementById("rl"), {json})</script>
//
//   - {viewer.js}: the file's text; {json}: the graph JSON (json.dumps of graph.to_dict()),
//     inlined as a JavaScript object literal. Write both with every "</" replaced by "<\/" so
//     nothing in them can end the <script> element (viewer.js itself contains no "</").
//   - window.routelensViewer.mount(element: HTMLElement, graph: GraphJson | string,
//     options?: { height?: number; threshold?: number }) -> handle
//       element: the (empty) container, already in the document; the viewer fills it.
//       graph: the routelens.graph/2 (or /1) object (or its JSON text). Anything else (another schema
//         version, not a graph) shows a message in the element saying what it got and what to
//         do, then mount throws.
//       options.height: the viewer's whole height in CSS pixels (default 640).
//       options.threshold: the first threshold drawn (default and minimum: graph.threshold,
//         since lighter edges are not in the graph).
//       handle: { element, threshold(), setThreshold(t), counts() -> {nodes, edges}, fit(),
//         destroy() }.
//   - Several viewers in one page (notebook cells) are independent: no ids, no document-level
//     listeners, no shared mutable state; loading viewer.js again is harmless.
//   - Test hooks (product.md): data-testid graph, graph-node (data-layer, data-pos, data-kind),
//     graph-edge (data-kind), threshold-slider, graph-counts, and error-banner for a refused graph.

import appCss from "./styles.css?inline";
import viewerCss from "./viewer.css?inline";
import type { Graph, Selection } from "./types";
import { type Prepared, type Pruned, prepare, prune } from "./graph/prune";
import { graphKey } from "./graph/keys";
import { legend } from "./graph/legend";
import { makeLayout } from "./graph/layout";
import { GraphView } from "./graph/view";
import { checkGraph, GraphFileError, parseGraphText, targetPos } from "./graphfile";
import { canonicalSelection, offlineCtx, offlinePanel } from "./panels/offline";
import { clamp, h, icon, num, tokenSpan } from "./ui/dom";

const CSS = appCss + "\n" + viewerCss;
const SLIDER_MAX = 0.3;
const DEFAULT_HEIGHT = 640;

export interface ViewerOptions {
  height?: number;
  threshold?: number;
}

export interface ViewerHandle {
  readonly element: HTMLElement;
  threshold(): number;
  setThreshold(t: number): void;
  counts(): { nodes: number; edges: number };
  fit(): void;
  destroy(): void;
}

function cssKey(text: string): string {
  let x = 5381;
  for (let i = 0; i < text.length; i++) x = ((x * 33) ^ text.charCodeAt(i)) >>> 0;
  return x.toString(36);
}

/** Add the viewer's CSS to the element's document once (per version of the CSS). */
function ensureStyle(doc: Document): void {
  const key = cssKey(CSS);
  if (doc.querySelector(`style[data-routelens-viewer="${key}"]`)) return;
  const st = doc.createElement("style");
  st.setAttribute("data-routelens-viewer", key);
  st.textContent = CSS;
  (doc.head ?? doc.documentElement).appendChild(st);
}


function errorBanner(message: string, code: string): HTMLElement {
  return h(
    "div",
    { class: "error-banner rlv-error", "data-testid": "error-banner", role: "alert" },
    h("span", { class: "err-icon", "aria-hidden": "true" }, "!"),
    h("div", { class: "err-text" }, h("div", { class: "err-message" }, message), h("div", { class: "err-meta muted small" }, `${code} · routelens viewer`)),
  );
}

class Viewer implements ViewerHandle {
  readonly element: HTMLElement;
  private root: HTMLElement;
  private view: GraphView;
  private p: Prepared;
  private pr: Pruned;
  private tokens: string[];
  private target: number;
  private minTau: number;
  private tau: number;
  private sel: Selection | null = null;
  private slider: HTMLInputElement;
  private thText: HTMLSpanElement;
  private countsEl: HTMLSpanElement;
  private info: HTMLElement;
  private layoutUsed: Uint8Array | null = null;
  private layoutSize = "";
  private relayoutTimer: number | undefined;
  private sideTimer: number | undefined;
  private resizeObs: ResizeObserver;
  private graphArea: HTMLElement;

  constructor(element: HTMLElement, graph: Graph, options: ViewerOptions) {
    this.element = element;
    this.tokens = graph.tokens;
    // a route to every position (target.pos null, several positions): -1, each root's column is a target
    const all = (graph.target.pos === null || graph.target.pos === undefined) && (graph.target.positions?.length ?? 0) > 1;
    this.target = all ? -1 : targetPos(graph);
    this.minTau = graph.threshold;
    this.tau = clamp(Number.isFinite(options.threshold) ? options.threshold! : graph.threshold, this.minTau, 1);
    const height = Number.isFinite(options.height) && options.height! > 120 ? options.height! : DEFAULT_HEIGHT;

    const tok = this.target >= 0 ? graph.tokens[this.target] : null;
    const pred = typeof graph.target.token === "string" ? graph.target.token : null;
    const positions = graph.target.positions;
    const head = h(
      "div",
      { class: "rlv-head" },
      h("span", { class: "rlv-brand" }, h("span", { class: "logo", "aria-hidden": "true" }, "◭"), "routelens"),
      h("span", { title: "model" }, h("b", null, graph.model.name ?? "model")),
      tok !== null
        ? h(
            "span",
            null,
            "route to ",
            tokenSpan(tok, "tok", false, graph.token_bytes?.[this.target]),
            h("span", { class: "muted" }, ` (position ${this.target})`),
            pred !== null ? h("span", null, " → predicts ", tokenSpan(pred, "tok pred")) : null,
          )
        : positions?.length
          ? h("span", null, `routes to ${positions.length} positions`)
          : null,
      h("span", { class: "muted" }, `threshold ${num(graph.threshold)}${graph.norm ? ` · ${String(graph.norm).toUpperCase()}` : ""} · ${graph.tokens.length} tokens · ${graph.model.n_layers} layers`),
    );

    const maxTau = this.minTau < SLIDER_MAX ? SLIDER_MAX : 1;
    this.slider = h("input", {
      type: "range",
      "data-testid": "threshold-slider",
      min: String(this.minTau),
      max: String(maxTau),
      step: "0.001",
      value: String(this.tau),
      "aria-label": "threshold",
      title: `edges lighter than this are hidden; the graph holds edges down to ${num(this.minTau)} ([ and ] step it)`,
    });
    this.thText = h("span", { class: "rlv-th" });
    let pending = false;
    this.slider.addEventListener("input", () => {
      this.thText.textContent = num(Number(this.slider.value));
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        this.setThreshold(Number(this.slider.value));
      });
    });
    this.slider.addEventListener("change", () => this.setThreshold(Number(this.slider.value)));
    this.countsEl = h("span", { class: "counts muted small", "data-testid": "graph-counts" });
    const toolbar = h(
      "div",
      { class: "graph-toolbar rlv-toolbar" },
      h("label", { class: "th-field" }, h("span", { class: "field-label" }, "Threshold"), this.slider, this.thText),
      this.countsEl,
      h("div", { class: "spacer" }),
      legend("rlv-legend"),
      h(
        "div",
        { class: "btn-group" },
        h("button", { class: "icon-btn", type: "button", title: "fit the whole route (F)", onclick: () => this.fit() }, icon("fit")),
        h("button", { class: "icon-btn", type: "button", title: "zoom out (-)", onclick: () => this.view.zoomBy(1 / 1.4) }, "−"),
        h("button", { class: "icon-btn", type: "button", title: "zoom in (+)", onclick: () => this.view.zoomBy(1.4) }, "+"),
      ),
    );
    this.info = h("aside", { class: "rlv-info", hidden: true, "aria-label": "details" });
    this.graphArea = h("div", { class: "rlv-graph" });
    this.root = h("div", { class: "rlv", tabindex: 0, style: `height:${height}px`, "data-routelens-viewer": "" }, head, toolbar, this.graphArea);
    element.replaceChildren(this.root);

    this.view = new GraphView(this.graphArea, {
      select: (sel) => this.select(canonicalSelection(sel)),
      target: () => {}, // the graph holds the route to one target only
    });
    this.graphArea.append(this.info);

    this.p = prepare(graph, graph.model.n_layers);
    this.pr = prune(this.p, this.tau);
    const { w, h: hh } = this.view.size();
    const layout = makeLayout(this.p, this.tokens.length, w, hh, this.pr.node);
    this.layoutUsed = layout.used;
    this.layoutSize = `${Math.round(w)}x${Math.round(hh)}`;
    this.view.setGraph(this.p, layout, this.tokens, this.tokens.map(() => []), this.target);
    this.view.render(this.pr);
    this.syncControls();

    this.root.addEventListener("keydown", (e) => this.onKey(e));
    this.resizeObs = new ResizeObserver(() => this.queueRelayout(150));
    this.resizeObs.observe(this.graphArea);
  }

  threshold(): number {
    return this.tau;
  }

  counts(): { nodes: number; edges: number } {
    return { nodes: this.pr.nodeList.length, edges: this.pr.edgeList.length };
  }

  fit(): void {
    this.view.fit();
  }

  destroy(): void {
    this.resizeObs.disconnect();
    clearTimeout(this.relayoutTimer);
    clearTimeout(this.sideTimer);
    this.view.clear();
    this.root.remove();
  }

  setThreshold(t: number): void {
    if (!Number.isFinite(t)) return;
    const tau = clamp(t, this.minTau, 1);
    this.tau = tau;
    if (this.pr.tau !== tau) {
      this.pr = prune(this.p, tau);
      this.view.render(this.pr);
      this.queueRelayout(150);
      if (this.sel) {
        clearTimeout(this.sideTimer);
        this.sideTimer = window.setTimeout(() => this.renderInfo(), 150);
      }
    }
    this.syncControls();
  }

  private syncControls(): void {
    this.slider.value = String(clamp(this.tau, this.minTau, Number(this.slider.max)));
    this.thText.textContent = num(this.tau);
    const hiddenE = this.p.edges.length - this.pr.edgeList.length;
    this.countsEl.replaceChildren(
      h("b", null, this.pr.nodeList.length.toLocaleString("en-US")),
      " nodes · ",
      h("b", null, this.pr.edgeList.length.toLocaleString("en-US")),
      " edges",
      hiddenE > 0 ? h("span", { class: "hidden-count" }, ` · ${hiddenE.toLocaleString("en-US")} lighter edges hidden`) : "",
    );
  }

  /** Compact columns (narrow the token columns the drawn route does not touch), and a new
   * layout when the drawing area changes size. */
  private queueRelayout(delay: number): void {
    clearTimeout(this.relayoutTimer);
    this.relayoutTimer = window.setTimeout(() => this.relayout(), delay);
  }

  private relayout(): void {
    if (!this.root.isConnected) return;
    const T = this.tokens.length;
    const { w, h: hh } = this.view.size();
    const size = `${Math.round(w)}x${Math.round(hh)}`;
    const used = new Uint8Array(T);
    for (const n of this.pr.nodeList) used[this.p.nodes[n].pos] = 1;
    const old = this.layoutUsed;
    const sameCols = !!old && old.length === T && old.every((v, i) => v === used[i]);
    if (sameCols && size === this.layoutSize) return;
    if (sameCols === false && this.pr.edgeList.length * 2 + this.pr.nodeList.length > 15000 && size === this.layoutSize) return;
    const layout = makeLayout(this.p, T, w, hh, this.pr.node);
    this.layoutUsed = layout.used;
    this.layoutSize = size;
    this.view.relayout(layout);
  }

  private select(sel: Selection | null): void {
    if (JSON.stringify(sel) === JSON.stringify(this.sel)) return;
    this.sel = sel;
    this.view.setSelection(sel);
    this.renderInfo();
  }

  private renderInfo(): void {
    const sel = this.sel;
    if (!sel) {
      this.info.hidden = true;
      this.info.replaceChildren();
      return;
    }
    const ctx = offlineCtx({
      tokens: this.tokens,
      nLayers: this.p.nLayers,
      nHeads: Number(this.p.graph.model.n_heads) || 0,
      parallel: this.p.parallel,
      graph: () => ({ p: this.p, pr: this.pr }),
      select: (s) => this.select(s),
      hover: (ref) => this.view.hoverExternal(ref),
    });
    const panel = offlinePanel(ctx, sel, "this file", "Open the trace in the routelens web app (routelens serve) to see them.");
    if (!panel) {
      this.info.hidden = true;
      return;
    }
    this.info.replaceChildren(panel);
    this.info.hidden = false;
  }

  private onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const handled = graphKey(e.key, {
      view: this.view,
      threshold: () => this.tau,
      setThreshold: (t) => this.setThreshold(t),
      clearSelection: () => this.select(null),
    });
    if (!handled) return;
    e.preventDefault();
    e.stopPropagation();
  }
}

/** Draw `graph` into `element` (see the contract at the top of this file). */
export function mount(element: HTMLElement, graph: unknown, options: ViewerOptions = {}): ViewerHandle {
  if (!element || typeof (element as HTMLElement).appendChild !== "function") {
    throw new TypeError("routelensViewer.mount(element, graph): element must be a DOM element (e.g. document.getElementById(...))");
  }
  ensureStyle(element.ownerDocument);
  let g: Graph;
  try {
    g = typeof graph === "string" ? parseGraphText(graph, "The graph") : checkGraph(graph, "The graph");
  } catch (err) {
    const e = err instanceof GraphFileError ? err : new GraphFileError(String((err as Error)?.message ?? err), "invalid_graph");
    element.replaceChildren(h("div", { class: "rlv", "data-routelens-viewer": "" }, errorBanner(e.message, e.code)));
    throw e;
  }
  return new Viewer(element, g, options);
}

/** The version of the mount contract above. */
export const version = "1";

// the IIFE's `var routelensViewer` holds these exports; set window's too, for a host that
// evaluates the script in a function scope
const api = { mount, version };
declare global {
  interface Window {
    routelensViewer?: typeof api;
  }
}
if (typeof window !== "undefined") window.routelensViewer = api;
