// The route graph drawing: one SVG, nodes and edges created once per fetched graph and then
// attached / detached by a keyed join when the threshold changes (no re-layout, no innerHTML).
// Zoom and pan with d3-zoom (a transform on one group); token and layer axes stay pinned to the
// bottom and left edges and thin their labels to what fits at the current zoom.

import { select, type Selection as D3Sel } from "d3-selection";
import { zoom, zoomIdentity, type ZoomBehavior, type ZoomTransform } from "d3-zoom";
import type { EdgeKind, Prediction, Selection } from "../types";
import { type Prepared, type Pruned, routeThrough } from "./prune";
import { type Layout, levelOf, levelY, nodeXY, edgePath } from "./layout";
import { h, svg, tokenText, truncate, num, pct, clamp } from "../ui/dom";

export const COLORS = {
  attn: "#0072B2",
  ffn: "#CC79A7",
  resid: "#8E959E",
  block: "#2F3A48",
  embed: "#7B8490",
  sel: "#E69F00",
  target: "#E69F00",
};

export function edgeStyle(kind: EdgeKind, w: number): { width: number; opacity: number } {
  const s = Math.sqrt(clamp(w, 0, 1));
  if (kind === "resid") return { width: 0.5 + 2.4 * s, opacity: 0.3 + 0.6 * w };
  return { width: 0.6 + 3.4 * s, opacity: 0.2 + 0.8 * w };
}

export interface GraphViewEvents {
  select(sel: Selection | null): void;
  target(pos: number): void;
}

const AXIS_X_H = 40;
const AXIS_Y_W = 46;
const KIND_NAME: Record<string, string> = {
  embed: "embedding",
  attn: "after attention",
  ffn: "FFN",
  block: "block output",
};

export class GraphView {
  readonly wrap: HTMLDivElement;
  readonly svg: SVGSVGElement;
  private viewport: SVGGElement;
  private gBands: SVGGElement;
  private canvas: HTMLCanvasElement; // visible strokes (and the layer bands), painted under the SVG
  private ctx: CanvasRenderingContext2D;
  private canvasQueued = false;
  private hlEdges = new Set<number>();
  private focusOn = false;
  private selEdge = -1;
  private gHits: Record<EdgeKind, SVGGElement>; // wide invisible hit paths (the graph-edge hooks)
  private gNodes: SVGGElement;
  private gMarks: SVGGElement;
  private gAxisX: SVGGElement;
  private gAxisY: SVGGElement;
  private axisXBg: SVGRectElement;
  private axisYBg: SVGRectElement;
  private bg: SVGRectElement;
  private tooltip: HTMLDivElement;
  private zoomer: ZoomBehavior<SVGSVGElement, unknown>;
  private d3svg: D3Sel<SVGSVGElement, unknown, null, undefined>;
  private t: ZoomTransform = zoomIdentity;
  private w = 800;
  private h = 500;

  p: Prepared | null = null;
  layout: Layout | null = null;
  pr: Pruned | null = null;
  private tokens: string[] = [];
  private predictions: Prediction[][] = [];
  private targetPos = -1;
  private nodeEl: (SVGElement | undefined)[] = [];
  private edgeEl: (SVGElement | undefined)[] = []; // hit line: data-testid=graph-edge
  private shownN = new Uint8Array(0);
  private shownE = new Uint8Array(0);
  private shownNodeList: number[] = [];
  private shownEdgeList: number[] = [];
  private elIndex = new WeakMap<Element, number>();
  private selected: Element | null = null;
  private selection: Selection | null = null;
  private hoverEl: Element | null = null;
  private highlighted: Element[] = [];
  private xLabels: SVGGElement[] = [];
  private yLabels: SVGTextElement[] = [];
  private axesQueued = false;
  lastDomMs = 0;

  constructor(
    parent: HTMLElement,
    private events: GraphViewEvents,
  ) {
    this.wrap = h("div", { class: "graph-wrap" });
    this.svg = svg("svg", { "data-testid": "graph", class: "graph", role: "img", "aria-label": "route graph" });
    // transparent: the canvas below paints the background, the bands and the edges
    this.bg = svg("rect", { class: "bg", x: 0, y: 0, width: "100%", height: "100%", fill: "transparent" });
    this.canvas = h("canvas", { class: "graph-canvas", "aria-hidden": "true" });
    this.ctx = this.canvas.getContext("2d")!;
    this.viewport = svg("g", { class: "viewport" });
    this.gBands = svg("g", { class: "bands" });
    this.gHits = {
      resid: svg("g", { class: "hits hits-resid" }),
      ffn: svg("g", { class: "hits hits-ffn" }),
      attn: svg("g", { class: "hits hits-attn" }),
    };
    this.gNodes = svg("g", { class: "nodes" });
    this.gMarks = svg("g", { class: "marks" });
    this.viewport.append(this.gBands, this.gHits.resid, this.gHits.ffn, this.gHits.attn, this.gNodes, this.gMarks);
    this.gAxisY = svg("g", { class: "axis axis-y" });
    this.axisYBg = svg("rect", { class: "axis-bg", x: 0, y: 0, width: AXIS_Y_W });
    this.gAxisY.append(this.axisYBg);
    this.gAxisX = svg("g", { class: "axis axis-x" });
    this.axisXBg = svg("rect", { class: "axis-bg", x: 0, height: AXIS_X_H });
    this.gAxisX.append(this.axisXBg);
    this.svg.append(this.bg, this.viewport, this.gAxisY, this.gAxisX);
    this.tooltip = h("div", { class: "tooltip", role: "tooltip" });
    this.wrap.append(this.canvas, this.svg, this.tooltip);
    parent.append(this.wrap);

    this.d3svg = select(this.svg);
    this.zoomer = zoom<SVGSVGElement, unknown>()
      .scaleExtent([0.02, 6])
      .clickDistance(4)
      .filter((ev: Event) => {
        const e = ev as WheelEvent & MouseEvent;
        if (e.type === "wheel") return !(e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY));
        if (e.type === "dblclick") return false;
        return (!e.ctrlKey || e.type === "wheel") && !e.button;
      })
      .on("zoom", (ev: { transform: ZoomTransform; sourceEvent: Event | null }) => {
        this.t = ev.transform;
        if (ev.sourceEvent) this.userMoved = true;
        this.viewport.setAttribute("transform", this.t.toString());
        this.queueCanvas();
        this.queueAxes();
      });
    this.d3svg.call(this.zoomer);
    this.svg.addEventListener(
      "wheel",
      (e) => {
        if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
          e.preventDefault();
          const dx = e.shiftKey && !e.deltaX ? e.deltaY : e.deltaX;
          this.userMoved = true;
          this.zoomer.translateBy(this.d3svg, -dx / this.t.k, e.shiftKey ? 0 : -e.deltaY / this.t.k);
        }
      },
      { passive: false },
    );

    this.svg.addEventListener("pointerover", (e) => this.onOver(e));
    this.svg.addEventListener("pointermove", (e) => this.moveTooltip(e));
    this.svg.addEventListener("pointerleave", () => {
      if (!this.frozen) this.setHover(null);
    });
    this.svg.addEventListener("click", (e) => this.onClick(e));
    new ResizeObserver(() => this.resize()).observe(this.wrap);
    this.resize();
  }

  frozen = false;
  private userMoved = false;

  // ---- data -------------------------------------------------------------------------------------
  setGraph(p: Prepared, layout: Layout, tokens: string[], predictions: Prediction[][], targetPos: number, keepView = false): void {
    this.p = p;
    this.pr = null;
    this.layout = layout;
    this.tokens = tokens;
    this.predictions = predictions;
    this.targetPos = targetPos;
    this.nodeEl = new Array(p.nodes.length);
    this.edgeEl = new Array(p.edges.length);
    this.geomVersion++;
    this.edgeGeom = new Uint32Array(p.edges.length);
    this.nodeGeom = new Uint32Array(p.nodes.length);
    this.shownN = new Uint8Array(p.nodes.length);
    this.shownE = new Uint8Array(p.edges.length);
    this.shownNodeList = [];
    this.shownEdgeList = [];
    this.selected = null;
    this.highlighted = [];
    this.hoverEl = null;
    this.hideTooltip();
    this.svg.classList.remove("focus");
    for (const g of Object.values(this.gHits)) g.replaceChildren();
    this.gNodes.replaceChildren();
    this.drawBands();
    this.drawMarks();
    if (!keepView) {
      this.userMoved = false;
      this.initialView();
    }
    this.queueAxes();
  }

  /** New node positions for the same graph (columns narrowed differently). Drawn elements move
   * now; elements made earlier but not drawn move when they are next attached. The target
   * column keeps its place on screen. */
  relayout(layout: Layout): void {
    const p = this.p;
    const old = this.layout;
    if (!p || !old) return;
    const focus = this.targetPos >= 0 ? this.targetPos : 0;
    const screenX = this.t.applyX(old.colX[focus]);
    this.layout = layout;
    this.geomVersion++;
    for (const i of this.shownEdgeList) this.placeEdge(i);
    for (const i of this.shownNodeList) this.placeNode(i);
    this.drawBands();
    this.drawMarks();
    if (!this.userMoved) this.initialView();
    else this.zoomer.translateBy(this.d3svg, (screenX - this.t.applyX(layout.colX[focus])) / this.t.k, 0);
    this.queueAxes();
  }

  private geomVersion = 0;
  private edgeGeom = new Uint32Array(0);
  private nodeGeom = new Uint32Array(0);

  private placeEdge(i: number): void {
    const hp = this.edgeEl[i];
    if (!hp || this.edgeGeom[i] === this.geomVersion) return;
    this.setHitGeom(hp, i);
    this.edgeGeom[i] = this.geomVersion;
  }

  private placeNode(i: number): void {
    const el = this.nodeEl[i];
    if (!el || this.nodeGeom[i] === this.geomVersion) return;
    const [x, y] = nodeXY(this.layout!, this.p!.nodes[i]);
    if (el.tagName === "circle") {
      el.setAttribute("cx", String(x));
      el.setAttribute("cy", String(y));
    } else {
      const w = Number(el.getAttribute("width"));
      el.setAttribute("x", String(x - w / 2));
      el.setAttribute("y", String(y - w / 2));
    }
    this.nodeGeom[i] = this.geomVersion;
  }

  clear(): void {
    this.p = this.layout = this.pr = null;
    for (const g of Object.values(this.gHits)) g.replaceChildren();
    this.gNodes.replaceChildren();
    this.gBands.replaceChildren();
    this.gMarks.replaceChildren();
    this.hideTooltip();
    this.queueCanvas();
    this.queueAxes();
  }

  private drawBands(): void {
    const L = this.layout!;
    const frag = document.createDocumentFragment();
    const x0 = 0;
    const w = L.width;
    const band = (lo: number, hi: number, i: number, layer: string) => {
      const y1 = levelY(L, hi) - L.rowH / 2;
      const y2 = levelY(L, lo) + L.rowH / 2;
      frag.append(svg("rect", { x: x0, y: y1, width: w, height: y2 - y1, fill: i % 2 ? "#F3F5F8" : "#FFFFFF", "data-layer": layer }));
    };
    band(0, 0, 1, "embed");
    for (let l = 0; l < L.nLayers; l++) {
      const lo = levelOf(L.parallel ? "block" : "attn", l, L.parallel);
      const hi = levelOf("block", l, L.parallel);
      band(lo, hi, l, String(l));
    }
    // narrowed columns: a light hatch so the gap reads as "tokens with no route here"
    for (let i = 0; i < L.used.length; i++) {
      if (L.used[i]) continue;
      const x = L.colX[i] - L.colW[i] / 2;
      frag.append(svg("rect", { x: x + 2, y: levelY(L, L.nLevels - 1) - L.rowH / 2, width: L.colW[i] - 4, height: (L.nLevels - 1) * L.rowH + L.rowH, fill: "#EEF0F3", opacity: 0.6 }));
    }
    this.gBands.replaceChildren(frag);
    this.queueCanvas();
  }

  private drawMarks(): void {
    const L = this.layout!;
    this.gMarks.replaceChildren();
    if (this.targetPos < 0 || this.targetPos >= L.colX.length) return;
    const x = L.colX[this.targetPos];
    const y = levelY(L, L.nLevels - 1) - 9;
    this.gMarks.append(svg("path", { d: `M${x - 5},${y - 7}L${x + 5},${y - 7}L${x},${y}Z`, fill: COLORS.target, class: "target-mark" }));
  }

  // ---- drawing ----------------------------------------------------------------------------------
  private createNode(i: number): SVGElement {
    const n = this.p!.nodes[i];
    const [x, y] = nodeXY(this.layout!, n);
    let el: SVGElement;
    const isTarget = n.kind === "block" && n.layer === this.p!.nLayers - 1 && n.pos === this.targetPos;
    const r = this.layout!.nodeR;
    if (n.kind === "block") {
      el = svg("circle", { cx: x, cy: y, r: isTarget ? r * 1.35 : r, fill: COLORS.block, stroke: isTarget ? COLORS.target : "#FFFFFF", "stroke-width": isTarget ? 2.5 : 1 });
    } else if (n.kind === "attn") {
      el = svg("circle", { cx: x, cy: y, r: r * 0.85, fill: "#FFFFFF", stroke: COLORS.attn, "stroke-width": 1.6 });
    } else if (n.kind === "ffn") {
      const s = r * 0.85;
      el = svg("rect", { x: x - s, y: y - s, width: 2 * s, height: 2 * s, rx: 1.5, fill: COLORS.ffn, stroke: "#FFFFFF", "stroke-width": 1 });
    } else {
      el = svg("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r, rx: 2, fill: COLORS.embed, stroke: "#FFFFFF", "stroke-width": 1 });
    }
    if (n.degenerate) el.setAttribute("stroke-dasharray", "2 1.5");
    el.setAttribute("class", `node n-${n.kind}${isTarget ? " target" : ""}`);
    el.setAttribute("data-testid", "graph-node");
    el.setAttribute("data-id", n.id);
    el.setAttribute("data-kind", n.kind);
    el.setAttribute("data-layer", String(n.layer));
    el.setAttribute("data-pos", String(n.pos));
    this.elIndex.set(el, i);
    this.nodeEl[i] = el;
    this.nodeGeom[i] = this.geomVersion;
    return el;
  }

  /** Hit geometry of an edge as a <line> (straight edges) or a <polyline> (attention curves):
   * unlike a path's `d`, their geometry attributes are not CSS properties, so thousands of hit
   * elements share one computed style (style recalculation is what made dense redraws slow). */
  private hitGeom(i: number): { line?: [number, number, number, number]; points?: string } {
    const L = this.layout!;
    const p = this.p!;
    const e = p.edges[i];
    const [x1, y1] = nodeXY(L, p.nodes[e.s]);
    const [x2, y2] = nodeXY(L, p.nodes[e.t]);
    const r = (v: number) => Math.round(v * 10) / 10;
    if (e.kind !== "attn") {
      // a perfectly vertical line has an empty bounding box; lean it by a hair so the element
      // has a size (browsers and test drivers treat empty boxes as invisible)
      if (Math.abs(x1 - x2) < 0.5) return { line: [r(x1 - 0.6), r(y1), r(x2 + 0.6), r(y2)] };
      return { line: [r(x1), r(y1), r(x2), r(y2)] };
    }
    let c1x = x1, c1y = (y1 + y2) / 2, c2x = x2, c2y = c1y;
    if (Math.abs(x1 - x2) < 0.5) {
      const k = Math.min(12, L.colW[p.nodes[e.s].pos] * 0.25);
      c1x = x1 - k;
      c1y = y1 - (y1 - y2) * 0.2;
      c2x = x2 - k;
      c2y = y2 + (y1 - y2) * 0.2;
    }
    const N = 10; // even: the curve's midpoint is a vertex
    let pts = "";
    for (let j = 0; j <= N; j++) {
      const t = j / N;
      const u = 1 - t;
      const a = u * u * u, b = 3 * u * u * t, c = 3 * u * t * t, d = t * t * t;
      pts += `${r(a * x1 + b * c1x + c * c2x + d * x2)},${r(a * y1 + b * c1y + c * c2y + d * y2)} `;
    }
    return { points: pts };
  }

  private setHitGeom(el: SVGElement, i: number): void {
    const g = this.hitGeom(i);
    if (g.line) {
      el.setAttribute("x1", String(g.line[0]));
      el.setAttribute("y1", String(g.line[1]));
      el.setAttribute("x2", String(g.line[2]));
      el.setAttribute("y2", String(g.line[3]));
    } else el.setAttribute("points", g.points!);
  }

  private createEdge(i: number): SVGElement {
    const e = this.p!.edges[i];
    const hp: SVGElement = svg(e.kind === "attn" ? "polyline" : "line", {
      class: `edge e-${e.kind}`,
      "data-testid": "graph-edge",
      "data-kind": e.kind,
      "data-source": e.source,
      "data-target": e.target,
      "data-weight": String(e.weight),
      "data-layer": String(this.p!.nodes[e.t].layer),
    });
    // the visible stroke is painted on the canvas; this transparent wide stroke is only the
    // hit target and test hook (exportSvg() builds real SVG strokes)
    this.setHitGeom(hp, i);
    this.elIndex.set(hp, i);
    this.edgeEl[i] = hp;
    this.edgeGeom[i] = this.geomVersion;
    return hp;
  }

  /** Attach / detach elements so that exactly the pruned route is in the DOM. */
  render(pr: Pruned): void {
    const t0 = performance.now();
    const p = this.p!;
    this.clearHighlight();
    let removedE = 0;
    for (const i of this.shownEdgeList) if (!pr.edge[i]) removedE++;
    let removedN = 0;
    for (const i of this.shownNodeList) if (!pr.node[i]) removedN++;
    const kinds: EdgeKind[] = ["resid", "ffn", "attn"];
    if (removedE > 256 && removedE > pr.edgeList.length) {
      // most of the drawing goes away: clear the groups and re-append what stays, in order
      const fh = {} as Record<EdgeKind, DocumentFragment>;
      for (const k of kinds) {
        this.gHits[k].replaceChildren();
        fh[k] = document.createDocumentFragment();
      }
      this.shownE.fill(0);
      for (const i of pr.edgeList) {
        const kind = p.edges[i].kind;
        if (this.edgeEl[i]) this.placeEdge(i);
        fh[kind].appendChild(this.edgeEl[i] ?? this.createEdge(i));
        this.shownE[i] = 1;
      }
      for (const k of kinds) {
        this.gHits[k].appendChild(fh[k]);
      }
    } else {
      // removals (raising the threshold only removes: pruning is monotone)
      if (removedE)
        for (const i of this.shownEdgeList)
          if (!pr.edge[i]) {
            this.edgeEl[i]!.remove();
            this.shownE[i] = 0;
          }
      // insertions, keeping each kind's groups in ascending weight order (strongest on top)
      const next: Record<EdgeKind, Element | null> = { resid: null, ffn: null, attn: null };
      const list = pr.edgeList;
      for (let k = list.length - 1; k >= 0; k--) {
        const i = list[k];
        const kind = p.edges[i].kind;
        if (this.shownE[i]) {
          next[kind] = this.edgeEl[i]!;
          continue;
        }
        if (this.edgeEl[i]) this.placeEdge(i);
        const el = this.edgeEl[i] ?? this.createEdge(i);
        this.gHits[kind].insertBefore(el, next[kind]);
        next[kind] = el;
        this.shownE[i] = 1;
      }
    }
    if (removedN > 256 && removedN > pr.nodeList.length) {
      this.gNodes.replaceChildren();
      this.shownN.fill(0);
    } else if (removedN) {
      for (const i of this.shownNodeList)
        if (!pr.node[i]) {
          this.nodeEl[i]!.remove();
          this.shownN[i] = 0;
        }
    }
    let frag: DocumentFragment | null = null;
    for (const i of pr.nodeList) {
      if (this.shownN[i]) continue;
      frag ??= document.createDocumentFragment();
      if (this.nodeEl[i]) this.placeNode(i);
      frag.appendChild(this.nodeEl[i] ?? this.createNode(i));
      this.shownN[i] = 1;
    }
    if (frag) this.gNodes.appendChild(frag);
    this.shownEdgeList = pr.edgeList;
    this.shownNodeList = pr.nodeList;
    this.pr = pr;
    this.applySelection();
    this.queueCanvas();
    this.lastDomMs = performance.now() - t0;
    this.schedulePrecreate();
  }

  private precreateToken = 0;

  /** Create the elements of edges and nodes not drawn yet in idle time, so that lowering the
   * threshold later only attaches them. */
  private schedulePrecreate(): void {
    const token = ++this.precreateToken;
    const p = this.p;
    if (!p) return;
    let e = 0;
    let n = 0;
    const idle: (cb: (d: { timeRemaining(): number }) => void) => void =
      (window as unknown as { requestIdleCallback?: typeof idle }).requestIdleCallback?.bind(window) ?? ((cb) => setTimeout(() => cb({ timeRemaining: () => 8 }), 16));
    const step = (d: { timeRemaining(): number }) => {
      if (token !== this.precreateToken || this.p !== p) return;
      const until = performance.now() + Math.max(4, Math.min(12, d.timeRemaining()));
      while (performance.now() < until) {
        for (let k = 0; k < 200 && e < p.edges.length; k++, e++) if (!this.edgeEl[e]) this.createEdge(e);
        for (let k = 0; k < 200 && n < p.nodes.length; k++, n++) if (!this.nodeEl[n]) this.createNode(n);
        if (e >= p.edges.length && n >= p.nodes.length) return;
      }
      idle(step);
    };
    idle(step);
  }

  // ---- selection & hover --------------------------------------------------------------------------
  setSelection(sel: Selection | null): void {
    this.selection = sel;
    this.applySelection();
  }

  private elementOf(sel: Selection | null): Element | null {
    if (!sel || !this.p) return null;
    if (sel.type === "node") {
      const i = this.p.byId.get(sel.id);
      return i !== undefined && this.shownN[i] ? this.nodeEl[i] ?? null : null;
    }
    const i = this.p.byKey.get(sel.key);
    return i !== undefined && this.shownE[i] ? this.edgeEl[i] ?? null : null;
  }

  private applySelection(): void {
    const el = this.elementOf(this.selection);
    if (el === this.selected) return;
    if (this.selected) this.selected.classList.remove("sel");
    if (el) el.classList.add("sel");
    this.selected = el;
    const sel = el && el.getAttribute("data-testid") === "graph-edge" ? this.elIndex.get(el) ?? -1 : -1;
    if (sel !== this.selEdge) {
      this.selEdge = sel;
      this.queueCanvas();
    }
  }

  private onOver(e: PointerEvent): void {
    if (this.frozen || e.shiftKey) return;
    const el = (e.target as Element).closest?.('[data-testid="graph-node"],[data-testid="graph-edge"]') ?? null;
    if (el !== this.hoverEl) this.setHover(el, e);
  }

  setHover(el: Element | null, e?: PointerEvent): void {
    this.hoverEl = el;
    this.clearHighlight();
    if (!el || !this.p || !this.pr) {
      this.hideTooltip();
      return;
    }
    const idx = this.elIndex.get(el);
    if (idx === undefined) return;
    if (el.getAttribute("data-testid") === "graph-node") {
      const r = routeThrough(this.p, this.pr, idx);
      this.highlight(r.nodes, r.edges);
      this.showTooltip(this.nodeTooltip(idx), e);
    } else {
      const edge = this.p.edges[idx];
      this.highlight(new Set([edge.s, edge.t]), new Set([idx]));
      this.showTooltip(this.edgeTooltip(idx), e);
    }
  }

  /** Light an edge from outside (a panel row): key = edgeKey, or a node id. */
  hoverExternal(ref: { edge?: string; node?: string } | null): void {
    if (!this.p || !this.pr) return;
    if (!ref) {
      this.clearHighlight();
      return;
    }
    if (ref.edge !== undefined) {
      const i = this.p.byKey.get(ref.edge);
      if (i === undefined || !this.shownE[i]) return;
      this.clearHighlight();
      this.highlight(new Set([this.p.edges[i].s, this.p.edges[i].t]), new Set([i]));
    } else if (ref.node !== undefined) {
      const i = this.p.byId.get(ref.node);
      if (i === undefined || !this.shownN[i]) return;
      this.clearHighlight();
      const r = routeThrough(this.p, this.pr, i);
      this.highlight(r.nodes, r.edges);
    }
  }

  private highlight(nodes: Set<number>, edges: Set<number>): void {
    for (const i of nodes) {
      const el = this.nodeEl[i];
      if (el && this.shownN[i]) {
        el.classList.add("hl");
        this.highlighted.push(el);
      }
    }
    this.hlEdges.clear();
    for (const i of edges) if (this.shownE[i]) this.hlEdges.add(i);
    this.focusOn = true;
    this.queueCanvas();
    this.svg.classList.add("focus");
  }

  private clearHighlight(): void {
    if (!this.highlighted.length && !this.svg.classList.contains("focus") && !this.focusOn) return;
    for (const el of this.highlighted) el.classList.remove("hl");
    this.highlighted = [];
    this.svg.classList.remove("focus");
    this.focusOn = false;
    this.hlEdges.clear();
    this.queueCanvas();
  }

  private tokLabel(pos: number): string {
    return `‘${truncate(tokenText(this.tokens[pos] ?? "?"), 24)}’ (${pos})`;
  }

  private nodeTooltip(i: number): HTMLElement {
    const n = this.p!.nodes[i];
    const inc = Array.from(this.p!.incoming[i]).filter((e) => this.pr!.edge[e]);
    const rows = inc.slice(0, 4).map((ei) => {
      const e = this.p!.edges[ei];
      const src = this.p!.nodes[e.s];
      return h("div", { class: "tt-row" }, h("span", { class: `kind-dot k-${e.kind}` }), `${e.kind} from ${this.tokLabel(src.pos)}`, h("b", null, num(e.weight)));
    });
    const layerText = n.kind === "embed" ? "embedding" : `layer ${n.layer}`;
    return h(
      "div",
      null,
      h("div", { class: "tt-title" }, `${KIND_NAME[n.kind]} · ${layerText}`),
      h("div", null, "token ", h("b", null, this.tokLabel(n.pos))),
      h("div", { class: "tt-dim" }, `node ${n.id}`),
      n.degenerate ? h("div", { class: "tt-warn" }, "degenerate: parts cancel, importances fall back to norms") : null,
      rows.length ? h("div", { class: "tt-sub" }, `incoming in route (${inc.length})`) : null,
      rows,
      h("div", { class: "tt-hint" }, n.kind === "ffn" ? "click: neurons" : "click: top tokens"),
    );
  }

  private edgeTooltip(i: number): HTMLElement {
    const e = this.p!.edges[i];
    const s = this.p!.nodes[e.s];
    const t = this.p!.nodes[e.t];
    const heads = Object.entries(e.heads ?? {})
      .map(([k, v]) => [Number(k), v] as [number, number])
      .sort((a, b) => b[1] - a[1]);
    const layer = t.layer;
    return h(
      "div",
      null,
      h("div", { class: "tt-title" }, h("span", { class: `kind-dot k-${e.kind}` }), `${e.kind === "resid" ? "residual" : e.kind === "ffn" ? "FFN" : "attention"} edge · layer ${layer}`),
      h("div", null, this.tokLabel(s.pos), " → ", this.tokLabel(t.pos)),
      h("div", null, "weight ", h("b", null, num(e.weight, 4))),
      heads.length
        ? h(
            "div",
            { class: "tt-heads" },
            h("div", { class: "tt-sub" }, `heads (${heads.length})`),
            heads.slice(0, 5).map(([hd, w]) =>
              h("div", { class: "tt-row" }, `head ${hd}`, h("span", { class: "tt-bar", style: `width:${Math.max(2, (w / e.weight) * 60)}px` }), h("b", null, `${num(w)} · ${pct(w / e.weight)}`)),
            ),
            heads.length > 5 ? h("div", { class: "tt-dim" }, `+${heads.length - 5} more`) : null,
          )
        : null,
      h("div", { class: "tt-dim" }, `${e.source} → ${e.target}`),
      e.kind === "attn" ? h("div", { class: "tt-hint" }, "click: heads") : null,
    );
  }

  private showTooltip(content: HTMLElement, e?: PointerEvent): void {
    this.tooltip.replaceChildren(content);
    this.tooltip.style.display = "block";
    if (e) this.moveTooltip(e);
  }

  private hideTooltip(): void {
    this.tooltip.style.display = "none";
  }

  private moveTooltip(e: PointerEvent): void {
    if (this.tooltip.style.display !== "block" || this.frozen) return;
    const r = this.wrap.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    const tw = this.tooltip.offsetWidth;
    const th = this.tooltip.offsetHeight;
    const left = x + 14 + tw > r.width ? x - tw - 14 : x + 14;
    const top = clamp(y + 14 + th > r.height ? y - th - 10 : y + 14, 4, Math.max(4, r.height - th - 4));
    this.tooltip.style.transform = `translate(${Math.max(4, left)}px, ${top}px)`;
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
    const el = target.closest?.('[data-testid="graph-node"],[data-testid="graph-edge"]');
    if (!el || !this.p) {
      this.events.select(null);
      return;
    }
    const i = this.elIndex.get(el);
    if (i === undefined) return;
    if (el.getAttribute("data-testid") === "graph-node") this.events.select({ type: "node", id: this.p.nodes[i].id });
    else this.events.select({ type: "edge", key: this.p.edges[i].key });
  }

  // ---- view -------------------------------------------------------------------------------------
  private resize(): void {
    const r = this.svg.getBoundingClientRect();
    this.w = Math.max(100, r.width);
    this.h = Math.max(100, r.height);
    this.axisYBg.setAttribute("height", String(this.h));
    this.axisXBg.setAttribute("width", String(this.w));
    this.gAxisX.setAttribute("transform", `translate(0,${this.h - AXIS_X_H})`);
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.round(this.w * dpr);
    const ch = Math.round(this.h * dpr);
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw;
      this.canvas.height = ch;
    }
    this.drawCanvas();
    if (this.layout && !this.userMoved) this.initialView();
    this.queueAxes();
  }

  size(): { w: number; h: number } {
    const r = this.svg.getBoundingClientRect();
    return { w: r.width || this.w, h: r.height || this.h };
  }

  /** The drawn content's box in graph units (token columns x layer rows, target marker included). */
  private contentBox(): { x0: number; x1: number; y0: number; y1: number } {
    const L = this.layout!;
    const n = L.colX.length;
    return {
      x0: L.colX[0] - L.colW[0] / 2,
      x1: L.colX[n - 1] + L.colW[n - 1] / 2,
      y0: levelY(L, L.nLevels - 1) - 18,
      y1: levelY(L, 0) + L.rowH / 2 + 2,
    };
  }

  /** The screen area not covered by the axes. */
  private screenBox(): { x0: number; x1: number; y0: number; y1: number } {
    const { w, h } = this.size();
    return { x0: AXIS_Y_W + 4, x1: w - 10, y0: 4, y1: h - AXIS_X_H - 4 };
  }

  private initialView(): void {
    const c = this.contentBox();
    const s = this.screenBox();
    const kx = (s.x1 - s.x0) / (c.x1 - c.x0);
    const ky = (s.y1 - s.y0) / (c.y1 - c.y0);
    if (Math.min(kx, ky) >= 0.5) {
      this.fit();
      return;
    }
    // too wide to fit legibly: keep the full height (down to a floor) and show the target's end
    const k = clamp(ky, 0.3, 1);
    const focusX = this.targetPos >= 0 ? this.layout!.colX[this.targetPos] + this.layout!.colW[this.targetPos] : c.x1;
    const tx = Math.min(s.x0 - c.x0 * k, s.x1 - 40 - focusX * k);
    const ty = (c.y1 - c.y0) * k <= s.y1 - s.y0 ? s.y0 + ((s.y1 - s.y0) - (c.y1 - c.y0) * k) / 2 - c.y0 * k : s.y0 - c.y0 * k;
    this.d3svg.call(this.zoomer.transform, zoomIdentity.translate(tx, ty).scale(k));
  }

  fit(): void {
    if (!this.layout) return;
    const c = this.contentBox();
    const s = this.screenBox();
    const k = Math.min(1.6, (s.x1 - s.x0) / (c.x1 - c.x0), (s.y1 - s.y0) / (c.y1 - c.y0));
    const tx = s.x0 + ((s.x1 - s.x0) - (c.x1 - c.x0) * k) / 2 - c.x0 * k;
    const ty = s.y0 + ((s.y1 - s.y0) - (c.y1 - c.y0) * k) / 2 - c.y0 * k;
    this.d3svg.call(this.zoomer.transform, zoomIdentity.translate(tx, ty).scale(k));
  }

  zoomBy(f: number): void {
    const { w, h } = this.size();
    this.zoomer.scaleBy(this.d3svg, f, [w / 2, h / 2]);
  }

  /** Pan so that a token column is visible. */
  reveal(pos: number): void {
    if (!this.layout) return;
    const x = this.t.applyX(this.layout.colX[pos]);
    const { w } = this.size();
    if (x < AXIS_Y_W + 20 || x > w - 20) this.zoomer.translateBy(this.d3svg, (w / 2 - x) / this.t.k, 0);
  }

  private queueCanvas(): void {
    if (this.canvasQueued) return;
    this.canvasQueued = true;
    requestAnimationFrame(() => {
      this.canvasQueued = false;
      this.drawCanvas();
    });
  }

  /** Paint the background, the layer bands and the drawn edges, batched into one stroke per
   * kind and weight bucket (weakest first, so the strongest lie on top). */
  private drawCanvas(): void {
    const ctx = this.ctx;
    const cv = this.canvas;
    const dpr = cv.width / Math.max(1, this.w);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#FFFFFF";
    ctx.fillRect(0, 0, cv.width, cv.height);
    const L = this.layout;
    const p = this.p;
    if (!L || !p) return;
    const t = this.t;
    const k = t.k;
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * t.x, dpr * t.y);
    // bands (the SVG copies are hidden in the live view and kept for the export)
    for (const r of Array.from(this.gBands.children)) {
      const fill = r.getAttribute("fill")!;
      ctx.globalAlpha = Number(r.getAttribute("opacity") ?? 1);
      ctx.fillStyle = fill;
      ctx.fillRect(Number(r.getAttribute("x")), Number(r.getAttribute("y")), Number(r.getAttribute("width")), Number(r.getAttribute("height")));
    }
    const pr = this.pr;
    if (!pr) return;
    const NB = 32;
    const kinds: EdgeKind[] = ["resid", "ffn", "attn"];
    const buckets: Record<EdgeKind, number[][]> = { resid: [], ffn: [], attn: [] };
    const hl: number[] = [];
    for (const i of pr.edgeList) {
      if (this.focusOn && this.hlEdges.has(i)) {
        hl.push(i);
        continue;
      }
      const e = p.edges[i];
      const b = Math.min(NB - 1, Math.floor(Math.sqrt(clamp(e.weight, 0, 1)) * NB));
      (buckets[e.kind][b] ??= []).push(i);
    }
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    const nodes = p.nodes;
    const trace = (i: number) => {
      const e = p.edges[i];
      const [x1, y1] = nodeXY(L, nodes[e.s]);
      const [x2, y2] = nodeXY(L, nodes[e.t]);
      ctx.moveTo(x1, y1);
      if (e.kind === "attn") {
        if (Math.abs(x1 - x2) < 0.5) {
          const c = Math.min(12, L.colW[nodes[e.s].pos] * 0.25);
          ctx.bezierCurveTo(x1 - c, y1 - (y1 - y2) * 0.2, x2 - c, y2 + (y1 - y2) * 0.2, x2, y2);
        } else {
          const ym = (y1 + y2) / 2;
          ctx.bezierCurveTo(x1, ym, x2, ym, x2, y2);
        }
      } else ctx.lineTo(x2, y2);
    };
    for (const kind of kinds) {
      ctx.strokeStyle = COLORS[kind];
      const bs = buckets[kind];
      for (let b = 0; b < NB; b++) {
        const list = bs[b];
        if (!list) continue;
        // style of the bucket's mean weight (non-scaling widths: screen pixels)
        let sw = 0;
        for (const i of list) sw += p.edges[i].weight;
        const st = edgeStyle(kind, sw / list.length);
        ctx.globalAlpha = this.focusOn ? 0.06 : st.opacity;
        ctx.lineWidth = st.width / k;
        ctx.beginPath();
        for (const i of list) trace(i);
        ctx.stroke();
      }
    }
    for (const i of hl) {
      const e = p.edges[i];
      const st = edgeStyle(e.kind, e.weight);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = COLORS[e.kind];
      ctx.lineWidth = st.width / k;
      ctx.beginPath();
      trace(i);
      ctx.stroke();
    }
    if (this.selEdge >= 0 && this.shownE[this.selEdge]) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = COLORS.sel;
      ctx.lineWidth = 3.5 / k;
      ctx.beginPath();
      trace(this.selEdge);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  private queueAxes(): void {
    if (this.axesQueued) return;
    this.axesQueued = true;
    requestAnimationFrame(() => {
      this.axesQueued = false;
      this.drawAxes();
    });
  }

  private drawAxes(): void {
    const L = this.layout;
    const t = this.t;
    // token axis (bottom)
    let used = 0;
    if (L) {
      const x0 = t.invertX(AXIS_Y_W);
      const x1 = t.invertX(this.w);
      let lo = 0;
      let hi = L.colX.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (L.colX[mid] + L.colW[mid] / 2 < x0) lo = mid + 1;
        else hi = mid;
      }
      const placed: [number, number][] = [];
      const want: number[] = [];
      if (this.targetPos >= 0) want.push(this.targetPos);
      for (let i = lo; i < L.colX.length && L.colX[i] - L.colW[i] / 2 <= x1; i++) if (L.used[i] && i !== this.targetPos) want.push(i);
      for (const i of want) {
        const sx = t.applyX(L.colX[i]);
        if (sx < AXIS_Y_W - 10 || sx > this.w + 10) continue;
        const colPx = L.colW[i] * t.k;
        const maxChars = clamp(Math.floor((Math.max(colPx, 30) - 4) / 6.6), 2, 14);
        const text = truncate(tokenText(this.tokens[i] ?? ""), maxChars);
        const half = (Math.max(Array.from(text).length * 6.6, String(i).length * 5.5) + 6) / 2;
        const a = sx - half;
        const b = sx + half;
        if (placed.some(([p, q]) => a < q && b > p)) continue;
        placed.push([a, b]);
        const g = this.xLabel(used++);
        g.setAttribute("transform", `translate(${sx.toFixed(1)},0)`);
        g.setAttribute("data-pos", String(i));
        g.removeAttribute("display");
        const [posT, tokT] = g.children as unknown as SVGTextElement[];
        posT.textContent = String(i);
        tokT.textContent = text;
        g.classList.toggle("is-target", i === this.targetPos);
        const pred = this.predictions[i]?.[0];
        (g.lastElementChild as SVGTitleElement).textContent =
          `position ${i}: ${JSON.stringify(this.tokens[i] ?? "")}` + (pred ? `\nnext: ${JSON.stringify(pred.token)} ${pct(pred.prob)}` : "") + "\nclick: route to this position";
      }
    }
    for (let i = used; i < this.xLabels.length; i++) this.xLabels[i].setAttribute("display", "none");
    // layer axis (left)
    let n = 0;
    if (L) {
      let lastY = Infinity;
      const put = (level: number, text: string) => {
        const y = t.applyY(levelY(L, level));
        if (y < 6 || y > this.h - AXIS_X_H - 4) return;
        if (Math.abs(lastY - y) < 13) return;
        lastY = y;
        const el = this.yLabel(n++);
        el.setAttribute("y", y.toFixed(1));
        el.textContent = text;
        el.removeAttribute("display");
      };
      for (let l = L.nLayers - 1; l >= 0; l--) put(levelOf("block", l, L.parallel), `L${l}`);
      lastY = Infinity;
      put(0, "emb");
    }
    for (let i = n; i < this.yLabels.length; i++) this.yLabels[i].setAttribute("display", "none");
  }

  private xLabel(i: number): SVGGElement {
    if (!this.xLabels[i]) {
      const g = svg("g", { class: "xlabel" });
      g.append(svg("text", { class: "xl-pos", y: 13, "text-anchor": "middle" }), svg("text", { class: "xl-tok", y: 29, "text-anchor": "middle" }), svg("title"));
      this.gAxisX.append(g);
      this.xLabels[i] = g;
    }
    return this.xLabels[i];
  }

  private yLabel(i: number): SVGTextElement {
    if (!this.yLabels[i]) {
      const el = svg("text", { class: "ylabel", x: AXIS_Y_W - 7, "text-anchor": "end", "dominant-baseline": "middle" });
      this.gAxisY.append(el);
      this.yLabels[i] = el;
    }
    return this.yLabels[i];
  }

  // ---- export -----------------------------------------------------------------------------------
  /** A standalone SVG of the whole drawn route (inline styles, no CSS, no scripts). */
  exportSvg(title: string): { text: string; width: number; height: number } {
    const L = this.layout!;
    const head = 40;
    const foot = 58;
    const W = Math.ceil(L.width);
    const H = Math.ceil(L.height + head + foot - 30);
    const root = svg("svg", {
      xmlns: "http://www.w3.org/2000/svg",
      width: W,
      height: H,
      viewBox: `0 0 ${W} ${H}`,
      "font-family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
      "font-size": 11,
    });
    root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#FFFFFF" }));
    const tt = svg("text", { x: 12, y: 22, "font-size": 13, fill: "#1F2933", "font-weight": 600 });
    tt.textContent = title;
    root.append(tt);
    // legend
    let lx = W - 300;
    for (const [k, label] of [["attn", "attention"], ["resid", "residual"], ["ffn", "FFN"]] as const) {
      root.append(svg("line", { x1: lx, y1: 18, x2: lx + 18, y2: 18, stroke: COLORS[k], "stroke-width": 3 }));
      const tx = svg("text", { x: lx + 22, y: 22, fill: "#3E4C59" });
      tx.textContent = label;
      root.append(tx);
      lx += 90;
    }
    const g = svg("g", { transform: `translate(0,${head})` });
    const strip = (el: Element) => {
      const c = el.cloneNode(true) as Element;
      const all = [c, ...Array.from(c.querySelectorAll("*"))];
      for (const x of all) {
        for (const a of Array.from(x.attributes)) if (a.name === "class" || a.name.startsWith("data-")) x.removeAttribute(a.name);
      }
      return c;
    };
    g.append(strip(this.gBands));
    // the live view paints edges on a canvas: build SVG strokes for the export only
    for (const kind of ["resid", "ffn", "attn"] as EdgeKind[]) {
      const eg = svg("g");
      for (const i of this.shownEdgeList) {
        const e = this.p!.edges[i];
        if (e.kind !== kind) continue;
        const st = edgeStyle(e.kind, e.weight);
        eg.append(
          svg("path", {
            d: edgePath(L, this.p!, e).vis,
            "stroke-width": st.width.toFixed(2),
            "stroke-opacity": st.opacity.toFixed(3),
            fill: "none",
            stroke: COLORS[kind],
            "stroke-linecap": "round",
          }),
        );
      }
      g.append(eg);
    }
    g.append(strip(this.gNodes), strip(this.gMarks));
    // labels: layers on the left, every used token column at the bottom
    for (let l = 0; l < L.nLayers; l++) {
      const y = levelY(L, levelOf("block", l, L.parallel));
      const tx = svg("text", { x: 40, y: y + 4, "text-anchor": "end", fill: "#616E7C", "font-size": 10 });
      tx.textContent = `L${l}`;
      g.append(tx);
    }
    const ey = levelY(L, 0);
    const et = svg("text", { x: 40, y: ey + 4, "text-anchor": "end", fill: "#616E7C", "font-size": 10 });
    et.textContent = "emb";
    g.append(et);
    const by = L.height - 30;
    for (let i = 0; i < L.colX.length; i++) {
      if (!L.used[i]) continue;
      const maxChars = clamp(Math.floor((L.colW[i] - 4) / 6.6), 2, 20);
      const p1 = svg("text", { x: L.colX[i], y: by + 10, "text-anchor": "middle", fill: "#9AA5B1", "font-size": 9 });
      p1.textContent = String(i);
      const p2 = svg("text", {
        x: L.colX[i],
        y: by + 25,
        "text-anchor": "middle",
        fill: i === this.targetPos ? "#B26B00" : "#1F2933",
        "font-weight": i === this.targetPos ? 700 : 400,
        "font-family": "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      });
      p2.textContent = truncate(tokenText(this.tokens[i] ?? ""), maxChars);
      g.append(p1, p2);
    }
    root.append(g);
    const text = '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(root);
    return { text, width: W, height: H };
  }

  stats(): { nodes: number; edges: number; dom: number } {
    return { nodes: this.shownNodeList.length, edges: this.shownEdgeList.length, dom: this.svg.getElementsByTagName("*").length };
  }
}
