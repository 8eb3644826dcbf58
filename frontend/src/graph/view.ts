// The route graph drawing, put together from its parts:
//   scene.ts      what is drawn (graph, layout, route, tokens, targets), shared by the parts
//   style.ts      colours, the edge weight -> stroke mapping, node looks
//   camera.ts     zoom and pan (d3-zoom), the fit of the route, reveal, resize
//   paint.ts      the canvas painting (bands, edges, nodes, the lit route, rings)
//   layercache.ts cached canvas layers of dense routes
//   hooks.ts      the paint-free SVG hook elements (data-testid graph-node / graph-edge), kept
//                 in keepUntil order and attached in idle time
//   hover.ts      hit-testing, hover highlight, selection; tooltip.ts its tooltips
//   axes.ts       token and layer axes by the label rule of labels.ts
//   minimap.ts    the overview strip of a long prompt
//   svgexport.ts  the standalone SVG export
// A canvas paints; over it one SVG holds the hook elements (in a group under d3-zoom's
// transform) and the axes pinned to the bottom and left edges.

import type { Prediction, Selection } from "../types";
import { h, svg } from "../ui/dom";
import { Axes } from "./axes";
import { Camera } from "./camera";
import { Hooks } from "./hooks";
import { Hover } from "./hover";
import { type Layout, levelOf, levelY } from "./layout";
import { MINIMAP_H, Minimap } from "./minimap";
import { Painter } from "./paint";
import type { Prepared, Pruned } from "./prune";
import { Scene } from "./scene";
import { COLORS } from "./style";
import { tailRects } from "./diff";
import { exportSvg } from "./svgexport";
import { Tooltip } from "./tooltip";

export { COLORS, edgeStyle } from "./style";

export interface GraphViewEvents {
  select(sel: Selection | null): void;
  target(pos: number): void;
}

export class GraphView {
  readonly wrap: HTMLDivElement;
  readonly svg: SVGSVGElement;
  private viewport: SVGGElement;
  private gBands: SVGGElement;
  private gMarks: SVGGElement;
  private scene = new Scene();
  private cam: Camera;
  private painter: Painter;
  private hooks: Hooks;
  private hover: Hover;
  private tip: Tooltip;
  private axes: Axes;
  private minimap: Minimap;
  /** A fit waits for the first drawn route of a new graph (the fit frames the route). */
  private fitPending = false;
  /** Hover is frozen (Shift held by the app, or set from outside). */
  frozen = false;
  lastDomMs = 0;
  /** The token axis from this column on is marked (e.g. generated tokens); -1: none. Read by the next setGraph. */
  tail = -1;

  constructor(
    parent: HTMLElement,
    private events: GraphViewEvents,
  ) {
    const s = this.scene;
    this.wrap = h("div", { class: "graph-wrap" });
    this.svg = svg("svg", { "data-testid": "graph", "data-hooks": "sync", class: "graph", role: "img", "aria-label": "route graph" });
    // transparent: the canvas below paints the background, the bands and the edges
    const bg = svg("rect", { class: "bg", x: 0, y: 0, width: "100%", height: "100%", fill: "transparent" });
    const canvas = h("canvas", { class: "graph-canvas", "aria-hidden": "true" });
    this.viewport = svg("g", { class: "viewport" });
    this.gBands = svg("g", { class: "bands" });
    this.gMarks = svg("g", { class: "marks" });
    this.cam = new Camera(s, this.svg, () => this.onZoom());
    this.tip = new Tooltip(s, this.wrap, () => this.frozen);
    this.hooks = new Hooks(s, this.svg, () => this.hover.apply());
    this.hover = new Hover(s, this.hooks, this.tip, this.svg, () => this.painter.queue(), () => this.axes.queue());
    this.painter = new Painter(s, canvas, this.cam, this.hover, this.gBands);
    this.axes = new Axes(s, this.cam, this.svg, () => this.hover.positions());
    this.minimap = new Minimap(s, this.cam);
    this.viewport.append(this.gBands, this.hooks.gHits, this.hooks.gNodes, this.gMarks);
    this.svg.append(bg, this.viewport, this.axes.gY, this.axes.gX);
    this.wrap.append(canvas, this.svg, this.minimap.el, this.tip.el);
    parent.append(this.wrap);

    this.svg.addEventListener("pointerover", (e) => this.hover.over(e, this.frozen));
    this.svg.addEventListener("pointermove", (e) => this.tip.move(e));
    this.svg.addEventListener("pointerleave", () => {
      if (!this.frozen) this.setHover(null);
    });
    this.svg.addEventListener("click", (e) => this.onClick(e));
    new ResizeObserver(() => this.resize()).observe(this.wrap);
    this.resize();
  }

  get p(): Prepared | null {
    return this.scene.p;
  }
  get pr(): Pruned | null {
    return this.scene.pr;
  }
  get layout(): Layout | null {
    return this.scene.layout;
  }
  /** The data-testid hooks match the drawn route exactly. */
  get hooksInSync(): boolean {
    return this.hooks.inSync;
  }
  /** Every hook attached and placed, and in sync with the drawn route. */
  get hooksReady(): boolean {
    return this.hooks.ready;
  }
  /** Every cached canvas layer of the current view is built (or none is worth building). */
  get layersReady(): boolean {
    return this.painter.cache.ready;
  }

  // ---- data -------------------------------------------------------------------------------------
  /** A new fetched graph. `targetPos` -1: a route to every position (each root's column is a
   * target). `keepView`: the same route refined (zoom, pan and selection stay). */
  setGraph(p: Prepared, layout: Layout, tokens: string[], predictions: Prediction[][], targetPos: number, keepView = false): void {
    const s = this.scene;
    s.p = p;
    s.pr = null;
    s.layout = layout;
    s.tokens = tokens;
    s.predictions = predictions;
    s.targetPos = targetPos;
    s.setTargets();
    s.geomVersion++;
    this.hover.reset();
    this.hooks.reset();
    this.painter.cache.plan();
    this.drawBands();
    this.drawMarks();
    if (!keepView) {
      this.fit();
      this.fitPending = true; // again once the route is drawn
    }
    this.queueOverlay();
  }

  /** New node positions for the same graph (columns narrowed differently). Drawn elements move
   * now; elements made earlier but not drawn move when they are next attached. A view the user
   * has not moved since its fit is fitted again; otherwise the target column keeps its place
   * on screen. */
  relayout(layout: Layout): void {
    const s = this.scene;
    const old = s.layout;
    if (!s.p || !old) return;
    const focus = s.targets.length ? s.targets[s.targets.length - 1] : 0;
    const screenX = this.cam.t.applyX(old.colX[focus]);
    s.layout = layout;
    s.geomVersion++;
    this.hooks.relayout();
    this.drawBands();
    this.drawMarks();
    if (!this.cam.userMoved) this.fit();
    else this.cam.keepAt(layout.colX[focus], screenX);
    this.queueOverlay();
    this.painter.queue();
  }

  /** Draw the pruned route: the canvas paints it in the next frame; the hooks follow (hooks.ts). */
  render(pr: Pruned): void {
    const t0 = performance.now();
    this.hover.clear();
    this.scene.pr = pr;
    this.hooks.render(pr);
    this.hover.apply();
    this.painter.queue();
    this.lastDomMs = performance.now() - t0;
    this.hooks.schedule();
    if (this.fitPending) {
      this.fitPending = false;
      this.fit();
    }
    this.minimap.queue();
  }

  clear(): void {
    const s = this.scene;
    s.p = s.layout = s.pr = null;
    this.hooks.clear();
    this.painter.cache.drop();
    this.gBands.replaceChildren();
    this.gMarks.replaceChildren();
    this.tip.hide();
    this.painter.queue();
    this.queueOverlay();
  }

  private drawBands(): void {
    const L = this.scene.layout!;
    const frag = document.createDocumentFragment();
    const band = (lo: number, hi: number, i: number, layer: string) => {
      const y1 = levelY(L, hi) - L.rowH / 2;
      const y2 = levelY(L, lo) + L.rowH / 2;
      frag.append(svg("rect", { x: 0, y: y1, width: L.width, height: y2 - y1, fill: i % 2 ? "#F3F5F8" : "#FFFFFF", "data-layer": layer }));
    };
    band(0, 0, 1, "embed");
    for (let l = 0; l < L.nLayers; l++) band(levelOf(L.parallel ? "block" : "attn", l, L.parallel), levelOf("block", l, L.parallel), l, String(l));
    // narrowed columns: a light hatch so the gap reads as "tokens with no route here"
    for (let i = 0; i < L.used.length; i++) {
      if (L.used[i]) continue;
      const x = L.colX[i] - L.colW[i] / 2;
      frag.append(svg("rect", { x: x + 2, y: levelY(L, L.nLevels - 1) - L.rowH / 2, width: L.colW[i] - 4, height: (L.nLevels - 1) * L.rowH + L.rowH, fill: "#EEF0F3", opacity: 0.6 }));
    }
    frag.append(...tailRects(L, this.tail));
    this.svg.setAttribute("data-tail-from", String(this.tail));
    this.gBands.replaceChildren(frag);
    this.painter.queue();
  }

  /** A marker above each target column. */
  private drawMarks(): void {
    const L = this.scene.layout!;
    const frag = document.createDocumentFragment();
    const y = levelY(L, L.nLevels - 1) - 9;
    for (const pos of this.scene.targets) {
      const x = L.colX[pos];
      const r = Math.min(5, L.colW[pos] / 2 - 1);
      frag.append(svg("path", { d: `M${x - r},${y - 7}L${x + r},${y - 7}L${x},${y}Z`, fill: COLORS.target, class: "target-mark", "data-pos": pos }));
    }
    this.gMarks.replaceChildren(frag);
  }

  // ---- selection & hover --------------------------------------------------------------------------
  setSelection(sel: Selection | null): void {
    this.hover.setSelection(sel);
  }

  setHover(el: Element | null, e?: PointerEvent): void {
    this.hover.setHover(el, e);
  }

  /** Light an edge or node from outside (a panel row): key = edgeKey, or a node id. */
  hoverExternal(ref: { edge?: string; node?: string } | null): void {
    this.hover.external(ref);
  }

  private onClick(e: MouseEvent): void {
    const target = e.target as Element;
    const lab = target.closest?.(".xlabel");
    if (lab) {
      const pos = Number(lab.getAttribute("data-pos"));
      if (Number.isFinite(pos)) this.events.target(pos);
      return;
    }
    if (target.closest?.(".axis")) return;
    const p = this.scene.p;
    const el = this.hover.hookAt(e);
    if (!el || !p) {
      this.events.select(null);
      return;
    }
    const i = this.hooks.indexOf(el);
    if (i === undefined) return;
    if (!this.hooks.isEdgeHook(el)) this.events.select({ type: "node", id: p.nodes[i].id });
    else this.events.select({ type: "edge", key: p.edges[i].key });
  }

  // ---- view -------------------------------------------------------------------------------------
  private onZoom(): void {
    this.viewport.setAttribute("transform", this.cam.t.toString());
    this.painter.queue();
    this.queueOverlay();
  }

  private queueOverlay(): void {
    this.axes.queue();
    this.minimap.queue();
  }

  /** The drawing area changed size (window, side panel, fullscreen): fit the route again. */
  private resize(): void {
    const changed = this.cam.measure();
    const { w, h } = this.cam;
    this.axes.resize(w, h);
    const cv = this.painter.canvas;
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.round(w * dpr);
    const ch = Math.round(h * dpr);
    if (cv.width !== cw || cv.height !== ch) {
      cv.width = cw;
      cv.height = ch;
    }
    if (changed && this.scene.layout) this.fit();
    this.painter.draw();
    this.queueOverlay();
  }

  size(): { w: number; h: number } {
    return this.cam.size();
  }

  /** Frame the drawn route (camera.ts); data-fit on the SVG tells tests the size it was fitted at. */
  fit(): void {
    if (!this.scene.layout) return;
    this.cam.fit(MINIMAP_H);
    const { w, h } = this.cam.size();
    this.svg.setAttribute("data-fit", `${Math.round(w)}x${Math.round(h)}`);
  }

  zoomBy(f: number): void {
    this.cam.zoomBy(f);
  }

  /** Pan so that a token column is visible. */
  reveal(pos: number): void {
    this.cam.reveal(pos);
  }

  /** A standalone SVG of the whole drawn route (svgexport.ts). */
  exportSvg(title: string): { text: string; width: number; height: number } {
    return exportSvg(this.scene, this.gBands, this.gMarks, title);
  }

  stats(): { nodes: number; edges: number; dom: number } {
    const pr = this.scene.pr;
    return { nodes: pr ? pr.nodeList.length : 0, edges: pr ? pr.edgeList.length : 0, dom: this.svg.getElementsByTagName("*").length };
  }
}
