// The route graph drawing: a canvas paints the bands, edges and nodes; over it one SVG holds a
// paint-free hook element per node and edge of the fetched graph (the data-testid hooks, hover
// and click targets). Hook elements are created once per fetched graph and stay attached: a
// threshold change only moves the data-testid attribute (which no CSS selector reads, so no
// style, layout or paint work follows) onto the drawn ones. Hooks are ordered by the threshold
// up to which they stay drawn (keepUntil), so the pruned ones always lie under every drawn one
// of their group and never take a pointer event from it.
// Zoom and pan with d3-zoom (a transform on one group); token and layer axes stay pinned to the
// bottom and left edges and thin their labels to what fits at the current zoom.

import { select, type Selection as D3Sel } from "d3-selection";
import { zoom, zoomIdentity, type ZoomBehavior, type ZoomTransform } from "d3-zoom";
import type { EdgeKind, Prediction, Selection } from "../types";
import { type Prepared, type Pruned, routeThrough, keepUntilOf } from "./prune";
import { type Layout, levelOf, levelY, nodeXY, edgePath } from "./layout";
import { bytesNote, h, svg, tokenText, truncate, num, pct, clamp } from "../ui/dom";

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
const HAIRLINE = 1.5; // device pixels
const SMALL_NODE = 10; // device pixels across
const NB = 32; // weight buckets per edge kind on the canvas
const LAYER_MIN = 3000; // edges above a threshold level worth a cached canvas layer
const MAX_LAYERS = 8;
const LAYER_PIXELS = 24e6;
const ATTACH_NOW = 1000; // hooks a threshold change may create and attach before its frame
const BG_SLICE_MS = 15; // idle-time hook work per step
const BG_CHUNK = 200; // hooks attached per DOM insertion

/** Hooks attached together go in a group of their own: a frame after more hooks are attached
 * then re-paints far less of the hook layer than with one flat list (measured: the time until
 * the hooks of a dense route are all attached falls by about a third). */
function chunkGroup(frag: DocumentFragment): SVGGElement {
  const g = svg("g", { class: "chunk" });
  g.appendChild(frag);
  return g;
}
/** Node looks (radius in units of the layout's nodeR); index = look id, + NODE_LOOKS when the
 * node is degenerate (dashed outline). */
const NODE_LOOK = [
  { round: true, r: 1, rx: 0, fill: COLORS.block, stroke: "#FFFFFF", sw: 1 }, // block
  { round: true, r: 1.35, rx: 0, fill: COLORS.block, stroke: COLORS.target, sw: 2.5 }, // the target's block
  { round: true, r: 0.85, rx: 0, fill: "#FFFFFF", stroke: COLORS.attn, sw: 1.6 }, // after attention
  { round: false, r: 0.85, rx: 1.5, fill: COLORS.ffn, stroke: "#FFFFFF", sw: 1 }, // FFN
  { round: false, r: 1, rx: 2, fill: COLORS.embed, stroke: "#FFFFFF", sw: 1 }, // embedding
];
const NODE_LOOKS = NODE_LOOK.length;
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
  private gHits: SVGGElement; // paint-free edge hooks (wide invisible hit strokes), in keep order
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
  // which hooks carry data-testid now (they follow pr, at once or in idle time: hooksInSync)
  private shownN = new Uint8Array(0);
  private shownE = new Uint8Array(0);
  // the drawn route's lists (= pr's)
  private shownNodeList: number[] = [];
  private shownEdgeList: number[] = [];
  private elIndex = new WeakMap<Element, number>();
  private selected: Element | null = null;
  private selection: Selection | null = null;
  private hoverEl: Element | null = null;
  private hoverNode = -1;
  private hlNodes = new Set<number>();
  // hook order: indices sorted by keepUntil ascending (the drawn ones are a suffix); *Rank is the
  // inverse; hooks order[from..] are attached, the rest are created in the background
  private eOrder = new Int32Array(0);
  private eRank = new Int32Array(0);
  private nOrder = new Int32Array(0);
  private nRank = new Int32Array(0);
  private eFrom = 0;
  private nFrom = 0;
  private xLabels: SVGGElement[] = [];
  private yLabels: SVGTextElement[] = [];
  private axesQueued = false;
  lastDomMs = 0;

  constructor(
    parent: HTMLElement,
    private events: GraphViewEvents,
  ) {
    this.wrap = h("div", { class: "graph-wrap" });
    this.svg = svg("svg", { "data-testid": "graph", "data-hooks": "sync", class: "graph", role: "img", "aria-label": "route graph" });
    // transparent: the canvas below paints the background, the bands and the edges
    this.bg = svg("rect", { class: "bg", x: 0, y: 0, width: "100%", height: "100%", fill: "transparent" });
    this.canvas = h("canvas", { class: "graph-canvas", "aria-hidden": "true" });
    this.ctx = this.canvas.getContext("2d")!;
    this.viewport = svg("g", { class: "viewport" });
    this.gBands = svg("g", { class: "bands" });
    this.gHits = svg("g", { class: "hits" });
    this.gNodes = svg("g", { class: "nodes" });
    this.gMarks = svg("g", { class: "marks" });
    this.viewport.append(this.gBands, this.gHits, this.gNodes, this.gMarks);
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
    this.setInSync(true);
    this.selected = null;
    this.selEdge = -1;
    this.hlNodes.clear();
    this.hlEdges.clear();
    this.focusOn = false;
    this.hoverEl = null;
    this.hoverNode = -1;
    this.hideTooltip();
    this.svg.classList.remove("focus");
    this.bgToken++;
    this.gHits.replaceChildren();
    this.gNodes.replaceChildren();
    this.makeOrder(p);
    this.layersFirst = true;
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
    this.queueCanvas();
    this.scheduleBackground(); // re-place the attached hooks that are not drawn
  }

  /** Hook order: by the threshold up to which each stays drawn, then (edges) attention over FFN
   * over residual, then by weight; so among drawn hooks the ones that matter most lie on top. */
  private makeOrder(p: Prepared): void {
    const ku = keepUntilOf(p);
    const KR: Record<EdgeKind, number> = { resid: 0, ffn: 1, attn: 2 };
    const eo = Array.from({ length: p.edges.length }, (_, i) => i);
    const ek = ku.edge;
    const kr = Int8Array.from(p.edges, (e) => KR[e.kind] ?? 0);
    eo.sort((a, b) => ek[a] - ek[b] || kr[a] - kr[b] || a - b); // edges are ascending by weight
    const no = Array.from({ length: p.nodes.length }, (_, i) => i);
    const nk = ku.node;
    no.sort((a, b) => nk[a] - nk[b] || a - b);
    this.eOrder = Int32Array.from(eo);
    this.nOrder = Int32Array.from(no);
    this.eRank = new Int32Array(eo.length);
    this.eOrder.forEach((i, k) => (this.eRank[i] = k));
    this.nRank = new Int32Array(no.length);
    this.nOrder.forEach((i, k) => (this.nRank[i] = k));
    this.eFrom = eo.length;
    this.nFrom = no.length;
    // cache levels for the canvas (see drawCanvas): from the fetch threshold up, 1.25x apart,
    // while at least LAYER_MIN edges stay drawn above the level
    const levels: number[] = [];
    const sorted = Float64Array.from(ek).sort();
    const above = (lv: number) => {
      let lo = 0;
      let hi = sorted.length;
      while (lo < hi) {
        const m = (lo + hi) >> 1;
        if (sorted[m] > lv) hi = m;
        else lo = m + 1;
      }
      return sorted.length - lo;
    };
    const base = Number.isFinite(p.graph.threshold) && p.graph.threshold > 0 ? p.graph.threshold : 0.01;
    // at most LAYER_PIXELS cached pixels in all (4 bytes each)
    const maxLayers = Math.max(0, Math.min(MAX_LAYERS, Math.floor(LAYER_PIXELS / Math.max(1, this.canvas.width * this.canvas.height))));
    for (let lv = base; levels.length < maxLayers && above(lv) >= LAYER_MIN; lv *= 1.25) levels.push(lv);
    this.levels = levels;
    const bandOf = (v: number) => {
      let b = -1;
      while (b + 1 < levels.length && v > levels[b + 1]) b++;
      return b;
    };
    this.eBand = Int8Array.from(ek, bandOf);
    this.nBand = Int8Array.from(nk, bandOf);
    this.dropLayers();
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
    this.bgToken++;
    this.shownNodeList = [];
    this.shownEdgeList = [];
    this.setInSync(true);
    this.dropLayers();
    this.gHits.replaceChildren();
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
  /** How a node is painted (graph units; the canvas and the SVG export both use it). */
  private nodeLook(i: number): { shape: "circle" | "rect"; x: number; y: number; r: number; rx: number; fill: string; stroke: string; sw: number; dash: boolean } {
    const n = this.p!.nodes[i];
    const [x, y] = nodeXY(this.layout!, n);
    const id = n.kind === "block" ? (this.isTarget(i) ? 1 : 0) : n.kind === "attn" ? 2 : n.kind === "ffn" ? 3 : 4;
    const lk = NODE_LOOK[id];
    return { shape: lk.round ? "circle" : "rect", x, y, r: lk.r * this.layout!.nodeR, rx: lk.rx, fill: lk.fill, stroke: lk.stroke, sw: lk.sw, dash: !!n.degenerate };
  }

  private isTarget(i: number): boolean {
    const n = this.p!.nodes[i];
    return n.kind === "block" && n.layer === this.p!.nLayers - 1 && n.pos === this.targetPos;
  }

  /** A node's hook: the node's shape, painting nothing (the canvas paints the node), hit-tested
   * over its fill area. data-testid is set while the node is drawn. */
  private createNode(i: number): SVGElement {
    const n = this.p!.nodes[i];
    const lk = this.nodeLook(i);
    const el =
      lk.shape === "circle"
        ? svg("circle", { cx: lk.x, cy: lk.y, r: lk.r })
        : svg("rect", { x: lk.x - lk.r, y: lk.y - lk.r, width: 2 * lk.r, height: 2 * lk.r, rx: lk.rx });
    el.setAttribute("class", `node n-${n.kind}${this.isTarget(i) ? " target" : ""}`);
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
      "data-kind": e.kind,
      "data-source": e.source,
      "data-target": e.target,
      "data-weight": String(e.weight),
      "data-layer": String(this.p!.nodes[e.t].layer),
    });
    // the visible stroke is painted on the canvas; this transparent wide stroke is only the
    // hit target and test hook (exportSvg() builds real SVG strokes); data-testid is set while
    // the edge is drawn
    this.setHitGeom(hp, i);
    this.elIndex.set(hp, i);
    this.edgeEl[i] = hp;
    this.edgeGeom[i] = this.geomVersion;
    return hp;
  }

  /** Attach the hooks order[k..from) in front of the attached ones (they rank lower); those
   * that `want` marks drawn get their data-testid before they are attached. */
  private attachEdges(k: number, want?: Uint8Array): void {
    if (k >= this.eFrom) return;
    const frag = document.createDocumentFragment();
    for (let j = k; j < this.eFrom; j++) {
      const i = this.eOrder[j];
      if (this.edgeEl[i]) this.placeEdge(i);
      const el = this.edgeEl[i] ?? this.createEdge(i);
      if (want?.[i] && !this.shownE[i]) {
        el.setAttribute("data-testid", "graph-edge");
        this.shownE[i] = 1;
      }
      frag.appendChild(el);
    }
    this.gHits.insertBefore(chunkGroup(frag), this.gHits.firstChild);
    this.eFrom = k;
  }

  private attachNodes(k: number, want?: Uint8Array): void {
    if (k >= this.nFrom) return;
    const frag = document.createDocumentFragment();
    for (let j = k; j < this.nFrom; j++) {
      const i = this.nOrder[j];
      if (this.nodeEl[i]) this.placeNode(i);
      const el = this.nodeEl[i] ?? this.createNode(i);
      if (want?.[i] && !this.shownN[i]) {
        el.setAttribute("data-testid", "graph-node");
        this.shownN[i] = 1;
      }
      frag.appendChild(el);
    }
    this.gNodes.insertBefore(chunkGroup(frag), this.gNodes.firstChild);
    this.nFrom = k;
  }

  /** Draw the pruned route: the canvas paints it in the next frame; the hooks follow. When every
   * hook the route needs is attached (the usual case once the idle-time preparation is done, or
   * a change that needs only a few new ones) the data-testid moves happen here, before the
   * frame. Otherwise (a change to a dense threshold soon after the graph appears) creating and
   * attaching thousands of hooks would cost several hundred ms of script, style, layout and
   * paint before the frame: the frame paints the canvas alone and the hooks are brought in line
   * afterwards, in short idle-time chunks (hooksInSync is false until then; hover and clicks
   * meanwhile act on the drawn route, never on a stale hook). */
  render(pr: Pruned): void {
    const t0 = performance.now();
    this.clearHighlight();
    this.pr = pr;
    this.shownEdgeList = pr.edgeList;
    this.shownNodeList = pr.nodeList;
    // the drawn ones are a suffix of the hook order: hooks order[needE..] must be attached
    let k = this.eOrder.length;
    for (const i of pr.edgeList) if (this.eRank[i] < k) k = this.eRank[i];
    this.needE = k;
    k = this.nOrder.length;
    for (const i of pr.nodeList) if (this.nRank[i] < k) k = this.nRank[i];
    this.needN = k;
    const missing = Math.max(0, this.eFrom - this.needE) + Math.max(0, this.nFrom - this.needN);
    if (missing <= ATTACH_NOW) this.syncHooks();
    else this.setInSync(false);
    this.applySelection();
    this.queueCanvas();
    this.lastDomMs = performance.now() - t0;
    this.scheduleBackground();
  }

  private needE = 0;
  private needN = 0;
  /** The data-testid hooks match the drawn route exactly (one graph-edge per drawn edge, one
   * graph-node per drawn node). */
  hooksInSync = true;

  private setInSync(v: boolean): void {
    if (this.hooksInSync === v) return;
    this.hooksInSync = v;
    // for tests: [data-testid=graph][data-hooks=sync] (no CSS selector reads it)
    this.svg.setAttribute("data-hooks", v ? "sync" : "pending");
  }

  /** Attach the hooks the drawn route needs and move data-testid onto exactly the drawn ones. */
  private syncHooks(): void {
    const pr = this.pr;
    if (!pr) return;
    this.attachEdges(this.needE, pr.edge);
    this.attachNodes(this.needN, pr.node);
    const se = this.shownE;
    const want = pr.edge;
    for (let i = 0; i < se.length; i++) {
      if (se[i] === want[i]) continue;
      const el = this.edgeEl[i]!;
      if (want[i]) {
        this.placeEdge(i);
        el.setAttribute("data-testid", "graph-edge");
      } else el.removeAttribute("data-testid");
      se[i] = want[i];
    }
    const sn = this.shownN;
    const wantN = pr.node;
    for (let i = 0; i < sn.length; i++) {
      if (sn[i] === wantN[i]) continue;
      const el = this.nodeEl[i]!;
      if (wantN[i]) {
        this.placeNode(i);
        el.setAttribute("data-testid", "graph-node");
      } else el.removeAttribute("data-testid");
      sn[i] = wantN[i];
    }
    this.setInSync(true);
  }

  private bgToken = 0;
  /** Every hook of the fetched graph attached and placed, and the hooks in sync with the drawn
   * route: a threshold change only moves data-testid. */
  hooksReady = false;

  /** In idle time: first bring the hooks in line with the drawn route (attach the missing ones,
   * the drawn ones first, then move data-testid), then attach the hooks not attached yet (lowest
   * keep order last) and re-place attached hooks whose geometry is stale after a re-layout, so
   * that a threshold change later only moves data-testid. Each step does a few ms of work, so
   * that an input arriving meanwhile waits little (each step's new hooks cost about as much
   * again in the next frame's style, layout and paint). */
  private scheduleBackground(): void {
    const token = ++this.bgToken; // a newer job replaces this one
    const p = this.p;
    this.hooksReady = false;
    if (!p) return;
    let placeE = 0;
    let placeN = 0;
    const ric = (window as unknown as { requestIdleCallback?: (cb: () => void, o?: { timeout: number }) => void }).requestIdleCallback;
    const idle: (cb: () => void) => void = ric ? (cb) => ric(cb, { timeout: 300 }) : (cb) => setTimeout(cb, 16);
    const step = () => {
      if (token !== this.bgToken || this.p !== p) return;
      // a fixed slice, not the idle deadline: the deadline is often a few ms while frames keep
      // coming, and every slice costs a frame that walks the hooks
      const until = performance.now() + BG_SLICE_MS;
      if (!this.hooksInSync) {
        const pr = this.pr!;
        while (performance.now() < until && (this.eFrom > this.needE || this.nFrom > this.needN)) {
          if (this.eFrom > this.needE) this.attachEdges(Math.max(this.needE, this.eFrom - BG_CHUNK), pr.edge);
          else this.attachNodes(Math.max(this.needN, this.nFrom - BG_CHUNK), pr.node);
        }
        if (this.eFrom > this.needE || this.nFrom > this.needN) {
          idle(step);
          return;
        }
        this.syncHooks();
        this.applySelection();
        idle(step);
        return;
      }
      if (this.eFrom > 0 || this.nFrom > 0) {
        while (performance.now() < until && (this.eFrom > 0 || this.nFrom > 0)) {
          if (this.eFrom > 0) this.attachEdges(Math.max(0, this.eFrom - BG_CHUNK));
          else this.attachNodes(Math.max(0, this.nFrom - BG_CHUNK));
        }
        idle(step);
        return;
      }
      while (performance.now() < until && placeE < p.edges.length) {
        for (let k = 0; k < 500 && placeE < p.edges.length; k++, placeE++) this.placeEdge(placeE);
      }
      while (performance.now() < until && placeN < p.nodes.length) {
        for (let k = 0; k < 500 && placeN < p.nodes.length; k++, placeN++) this.placeNode(placeN);
      }
      if (placeE < p.edges.length || placeN < p.nodes.length) idle(step);
      else this.hooksReady = true;
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
      return i !== undefined && this.drawnN(i) ? this.nodeEl[i] ?? null : null;
    }
    const i = this.p.byKey.get(sel.key);
    return i !== undefined && this.drawnE(i) ? this.edgeEl[i] ?? null : null;
  }

  private applySelection(): void {
    const el = this.elementOf(this.selection);
    if (el === this.selected) return;
    if (this.selected) this.selected.classList.remove("sel");
    if (el) el.classList.add("sel");
    this.selected = el;
    const isEdge = !!el && this.isEdgeHook(el);
    const sel = el && isEdge ? this.elIndex.get(el) ?? -1 : -1;
    const selN = el && !isEdge ? this.elIndex.get(el) ?? -1 : -1;
    if (sel !== this.selEdge || selN !== this.selNode) {
      this.selEdge = sel;
      this.selNode = selN;
      this.queueCanvas();
    }
  }

  private selNode = -1;

  /** Drawn now (the canvas shows it); the hook's data-testid may lag while hooksInSync is false. */
  private drawnE(i: number): boolean {
    return !!this.pr && i >= 0 && this.pr.edge[i] === 1;
  }

  private drawnN(i: number): boolean {
    return !!this.pr && i >= 0 && this.pr.node[i] === 1;
  }

  private isEdgeHook(el: Element): boolean {
    const i = this.elIndex.get(el);
    return i !== undefined && this.edgeEl[i] === el;
  }

  /** Whether a hook element stands for a node or edge drawn now. */
  private isDrawnHook(el: Element): boolean {
    const i = this.elIndex.get(el);
    if (i === undefined) return false;
    return this.edgeEl[i] === el ? this.drawnE(i) : this.nodeEl[i] === el && this.drawnN(i);
  }

  /** The drawn hook under a pointer event: its target, or where that is the hook of a pruned
   * node or edge (they stay in the DOM, under the drawn ones of their group but over the edges
   * when nodes), the first drawn hook at that point. "Drawn" is the route on the canvas, not the
   * data-testid (which lags behind it while the hooks catch up after a change). */
  private hookAt(e: MouseEvent): Element | null {
    const target = e.target as Element;
    if (!this.elIndex.has(target)) return null;
    if (this.isDrawnHook(target)) return target;
    for (const x of document.elementsFromPoint(e.clientX, e.clientY)) {
      if (x === this.svg) break;
      if (this.isDrawnHook(x)) return x;
    }
    return null;
  }

  private onOver(e: PointerEvent): void {
    if (this.frozen || e.shiftKey) return;
    const el = this.hookAt(e);
    if (el !== this.hoverEl) this.setHover(el, e);
  }

  setHover(el: Element | null, e?: PointerEvent): void {
    this.hoverEl = el;
    this.hoverNode = -1;
    this.clearHighlight();
    if (!el || !this.p || !this.pr) {
      this.hideTooltip();
      return;
    }
    const idx = this.elIndex.get(el);
    if (idx === undefined) return;
    if (!this.isEdgeHook(el)) {
      this.hoverNode = idx;
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
      if (i === undefined || !this.drawnE(i)) return;
      this.clearHighlight();
      this.highlight(new Set([this.p.edges[i].s, this.p.edges[i].t]), new Set([i]));
    } else if (ref.node !== undefined) {
      const i = this.p.byId.get(ref.node);
      if (i === undefined || !this.drawnN(i)) return;
      this.clearHighlight();
      const r = routeThrough(this.p, this.pr, i);
      this.highlight(r.nodes, r.edges);
    }
  }

  private highlight(nodes: Set<number>, edges: Set<number>): void {
    this.hlNodes.clear();
    for (const i of nodes) if (this.drawnN(i)) this.hlNodes.add(i);
    this.hlEdges.clear();
    for (const i of edges) if (this.drawnE(i)) this.hlEdges.add(i);
    this.focusOn = true;
    this.queueCanvas();
    this.svg.classList.add("focus");
  }

  private clearHighlight(): void {
    if (!this.focusOn && !this.svg.classList.contains("focus")) return;
    this.hlNodes.clear();
    this.svg.classList.remove("focus");
    this.focusOn = false;
    this.hlEdges.clear();
    this.queueCanvas();
  }

  private tokLabel(pos: number): string {
    return `‘${truncate(tokenText(this.tokens[pos] ?? "?"), 24)}’ (${pos})`;
  }

  /** A token's bytes for a tooltip (the graph's `token_bytes`), "" when the graph has none. */
  private tokBytes(pos: number): string {
    return bytesNote(this.p?.graph.token_bytes?.[pos]);
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
      h("div", null, "token ", h("b", null, this.tokLabel(n.pos)), h("span", { class: "muted" }, this.tokBytes(n.pos))),
      h("div", { class: "tt-dim" }, `node ${n.id}`),
      n.degenerate ? h("div", { class: "tt-warn" }, "degenerate: parts cancel, importances fall back to norms") : null,
      rows.length ? h("div", { class: "tt-sub" }, `incoming in route (${inc.length})`) : null,
      rows,
      // attn and block nodes of /2 graphs: the share no edge carries (edges in + bias = 1)
      n.bias !== undefined && n.bias > 0
        ? h("div", { class: "tt-row", "data-testid": "tt-bias" }, h("span", { class: "kind-dot k-bias" }), "bias b_O (no source token)", h("b", null, num(n.bias)))
        : null,
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
    const el = this.hookAt(e);
    if (!el || !this.p) {
      this.events.select(null);
      return;
    }
    const i = this.elIndex.get(el);
    if (i === undefined) return;
    if (!this.isEdgeHook(el)) this.events.select({ type: "node", id: this.p.nodes[i].id });
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

  // canvas geometry, recomputed when the layout changes: per edge its end points and (attention)
  // control points, per node its centre and look
  private cgVersion = -1;
  private eg = new Float64Array(0); // 8 per edge: x1 y1 c1x c1y c2x c2y x2 y2
  private eBucket = new Uint8Array(0);
  private ng = new Float64Array(0); // 2 per node: x y
  private nLook = new Uint8Array(0);

  private canvasGeometry(): void {
    if (this.cgVersion === this.geomVersion && this.eg.length === this.p!.edges.length * 8) return;
    const L = this.layout!;
    const p = this.p!;
    const nodes = p.nodes;
    const ng = new Float64Array(nodes.length * 2);
    const look = new Uint8Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const [x, y] = nodeXY(L, nodes[i]);
      ng[2 * i] = x;
      ng[2 * i + 1] = y;
      const n = nodes[i];
      const base = n.kind === "block" ? (this.isTarget(i) ? 1 : 0) : n.kind === "attn" ? 2 : n.kind === "ffn" ? 3 : 4;
      look[i] = base + (n.degenerate ? NODE_LOOKS : 0);
    }
    const eg = new Float64Array(p.edges.length * 8);
    const eb = new Uint8Array(p.edges.length);
    const KR: Record<EdgeKind, number> = { resid: 0, ffn: 1, attn: 2 };
    for (let i = 0; i < p.edges.length; i++) {
      const e = p.edges[i];
      const x1 = ng[2 * e.s], y1 = ng[2 * e.s + 1], x2 = ng[2 * e.t], y2 = ng[2 * e.t + 1];
      let c1x = x1, c1y = y1, c2x = x2, c2y = y2;
      if (e.kind === "attn") {
        if (Math.abs(x1 - x2) < 0.5) {
          const c = Math.min(12, L.colW[nodes[e.s].pos] * 0.25);
          c1x = x1 - c;
          c1y = y1 - (y1 - y2) * 0.2;
          c2x = x2 - c;
          c2y = y2 + (y1 - y2) * 0.2;
        } else {
          c1y = c2y = (y1 + y2) / 2;
        }
      }
      eg.set([x1, y1, c1x, c1y, c2x, c2y, x2, y2], 8 * i);
      eb[i] = (KR[e.kind] ?? 0) * NB + Math.min(NB - 1, Math.floor(Math.sqrt(clamp(e.weight, 0, 1)) * NB));
    }
    this.eg = eg;
    this.eBucket = eb;
    this.ng = ng;
    this.nLook = look;
    this.cgVersion = this.geomVersion;
  }

  /** Paint the background, the layer bands, the drawn edges (one stroke per kind and weight
   * bucket, weakest first, so the strongest lie on top) and the drawn nodes. */
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
    this.canvasGeometry();
    const hl: number[] = [];
    // a cached layer holds every edge above its level: use the lowest level at or above the
    // threshold and draw live only the drawn edges under it (the paint order is by level band
    // first, so the picture is the same with or without the cache)
    // order: edges under the layer's level, the layer (its edges, then its nodes), the nodes
    // under its level; nodes lie over every edge either way
    let layer = this.layerFor(pr.tau);
    if (!layer && this.layersFirst) {
      // the first frame of a new graph: build the cached layers before it is painted
      this.layersFirst = false;
      this.buildLayersNow();
      layer = this.layerFor(pr.tau);
    }
    const live: number[] = [];
    for (const i of pr.edgeList) {
      if (this.focusOn && this.hlEdges.has(i)) hl.push(i);
      if (!layer || this.eBand[i] < layer.band) live.push(i);
    }
    this.strokeEdges(ctx, live, dpr, k, -1);
    if (layer) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.globalAlpha = 1;
      ctx.drawImage(layer.bmp, 0, 0);
      ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * t.x, dpr * t.y);
    } else this.scheduleLayers();
    this.paintNodes(ctx, layer ? pr.nodeList.filter((i) => this.nBand[i] < layer.band) : pr.nodeList, dpr * k);
    if (this.focusOn) {
      // a route is lit: veil the drawing, then draw the route again over the veil
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.globalAlpha = 0.85;
      ctx.fillStyle = "#FFFFFF";
      ctx.fillRect(0, 0, cv.width, cv.height);
      ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * t.x, dpr * t.y);
    }
    const trace = (i: number) => this.traceEdge(ctx, i);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
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
    if (this.drawnE(this.selEdge)) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = COLORS.sel;
      ctx.lineWidth = 3.5 / k;
      ctx.beginPath();
      trace(this.selEdge);
      ctx.stroke();
    }
    if (this.focusOn) this.paintNodes(ctx, pr.nodeList.filter((i) => this.hlNodes.has(i)), dpr * k);
    this.paintRings(ctx, dpr * k);
    ctx.globalAlpha = 1;
    ctx.setLineDash([]);
  }

  private traceEdge(ctx: CanvasRenderingContext2D, i: number): void {
    const eg = this.eg;
    const o = 8 * i;
    ctx.moveTo(eg[o], eg[o + 1]);
    if (this.p!.edges[i].kind === "attn") ctx.bezierCurveTo(eg[o + 2], eg[o + 3], eg[o + 4], eg[o + 5], eg[o + 6], eg[o + 7]);
    else ctx.lineTo(eg[o + 6], eg[o + 7]);
  }

  /** Stroke edges in paint order: by level band (weakest first), then kind (residual, FFN,
   * attention), then weight bucket; one stroke per (band, kind, bucket). alpha >= 0 overrides
   * the opacity (the faded edges while a route is lit). */
  private strokeEdges(ctx: CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D, list: number[], dpr: number, k: number, alpha: number): void {
    const p = this.p!;
    const eb = this.eBucket;
    const band = this.eBand;
    const nb = 3 * NB;
    const buckets: number[][] = [];
    for (const i of list) (buckets[(band[i] + 1) * nb + eb[i]] ??= []).push(i);
    const kinds: EdgeKind[] = ["resid", "ffn", "attn"];
    const c = ctx as CanvasRenderingContext2D;
    c.lineJoin = "round";
    for (let key = 0; key < buckets.length; key++) {
      const bl = buckets[key];
      if (!bl) continue;
      const kind = kinds[Math.floor((key % nb) / NB)];
      // style of the bucket's mean weight (non-scaling widths: screen pixels)
      let sw = 0;
      for (const i of bl) sw += p.edges[i].weight;
      const st = edgeStyle(kind, sw / bl.length);
      // strokes under HAIRLINE device pixels are drawn 1 px wide with their ink kept in the
      // opacity: the rasteriser draws those as hairlines, several times faster than wider
      // anti-aliased strokes (the software raster of ~1.2 px curves was most of a dense frame)
      const dev = st.width * dpr;
      const hair = dev < HAIRLINE;
      c.strokeStyle = COLORS[kind];
      c.globalAlpha = Math.min(1, (alpha >= 0 ? alpha : st.opacity) * (hair ? dev : 1));
      c.lineWidth = hair ? 1 / (dpr * k) : st.width / k;
      c.lineCap = hair ? "butt" : "round";
      c.beginPath();
      for (const i of bl) this.traceEdge(c, i);
      c.stroke();
    }
  }

  // ---- cached canvas layers -------------------------------------------------------------------
  private levels: number[] = [];
  private eBand = new Int8Array(0); // highest level index below the edge's keepUntil (-1: none)
  private nBand = new Int8Array(0); // the same for nodes
  private layers: (ImageBitmap | null)[] = [];
  private layerKey = "";
  private layerToken = 0;
  private layerTimer: number | undefined;
  private layersFirst = false;
  /** Every cached layer of the current view is built (or none is worth building). */
  layersReady = false;

  /** The layers' key: geometry, transform and pixel ratio. The canvas size is not in it: layers
   * (anchored at the canvas's top left) stay valid while they cover it (layersCover), so the
   * drawing area shrinking a little after the graph appears does not throw them away. */
  private viewKey(): string {
    const t = this.t;
    return `${this.geomVersion}|${t.k}|${t.x}|${t.y}|${this.canvas.width / Math.max(1, this.w)}`;
  }

  private layerW = 0;
  private layerH = 0;

  private layersCover(): boolean {
    return this.canvas.width <= this.layerW && this.canvas.height <= this.layerH;
  }

  private dropLayers(): void {
    for (const b of this.layers) b?.close();
    this.layers = [];
    this.layerKey = "";
    this.layerToken++;
    this.layersReady = this.levels.length === 0;
  }

  /** The cached layer for threshold tau: the lowest level >= tau that is built for this view. */
  private layerFor(tau: number): { band: number; bmp: ImageBitmap } | null {
    if (this.layerKey !== this.viewKey() || !this.layersCover()) {
      if (this.layers.length || this.layerKey) this.dropLayers();
      return null;
    }
    for (let j = 0; j < this.levels.length; j++) {
      if (this.levels[j] < tau) continue;
      const bmp = this.layers[j];
      return bmp ? { band: j, bmp } : null;
    }
    return null;
  }

  /** Once the view rests, build the layers in idle time, top level first: layer j = the band
   * j edges, layer j+1 over them, the band j nodes over that (each step rasterises one band). */
  private scheduleLayers(): void {
    if (!this.levels.length || typeof OffscreenCanvas === "undefined") return;
    const key = this.viewKey();
    if (this.layerKey === key && this.layersCover()) return; // built or being built for this view
    clearTimeout(this.layerTimer);
    this.layerTimer = window.setTimeout(() => {
      if (this.viewKey() !== key || !this.p || !this.layout) return;
      this.dropLayers();
      this.layerKey = key;
      this.layerW = this.canvas.width;
      this.layerH = this.canvas.height;
      const token = this.layerToken;
      const p = this.p;
      let j = this.levels.length - 1;
      const idle: (cb: () => void) => void = (window as unknown as { requestIdleCallback?: (cb: () => void, o?: { timeout: number }) => void }).requestIdleCallback
        ? (cb) => (window as unknown as { requestIdleCallback: (cb: () => void, o?: { timeout: number }) => void }).requestIdleCallback(cb, { timeout: 500 })
        : (cb) => setTimeout(cb, 16);
      const step = () => {
        if (token !== this.layerToken || this.p !== p || this.viewKey() !== key || !this.layersCover()) return;
        this.buildLayer(j--);
        if (j >= 0) idle(step);
        else {
          this.layersReady = true;
          this.queueCanvas();
        }
      };
      idle(step);
    }, 150);
  }

  /** Build every layer of the current view now (the first frame of a new graph: a change to a
   * dense threshold right after the graph appears then blits them instead of rastering tens of
   * thousands of edges in its frame). */
  private buildLayersNow(): void {
    if (!this.levels.length || typeof OffscreenCanvas === "undefined" || !this.p || !this.layout) return;
    clearTimeout(this.layerTimer);
    this.dropLayers();
    this.layerKey = this.viewKey();
    this.layerW = this.canvas.width;
    this.layerH = this.canvas.height;
    for (let j = this.levels.length - 1; j >= 0; j--) this.buildLayer(j);
    this.layersReady = true;
  }

  /** Rasterise layer j: the band j edges, layer j+1 over them, the band j nodes over that. */
  private buildLayer(j: number): void {
    const p = this.p!;
    this.canvasGeometry();
    const cv = this.canvas;
    const oc = new OffscreenCanvas(this.layerW, this.layerH);
    const c = oc.getContext("2d")!;
    const dpr = cv.width / Math.max(1, this.w);
    const t = this.t;
    c.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);
    const band: number[] = [];
    const ku = keepUntilOf(p).edge;
    const lo = this.levels[j];
    const hi = j + 1 < this.levels.length ? this.levels[j + 1] : Infinity;
    for (let i = 0; i < ku.length; i++) if (ku[i] > lo && ku[i] <= hi) band.push(i);
    this.strokeEdges(c, band, dpr, t.k, -1);
    const above = this.layers[j + 1];
    if (above) {
      c.setTransform(1, 0, 0, 1, 0, 0);
      c.globalAlpha = 1;
      c.drawImage(above, 0, 0);
      c.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);
    }
    const kn = keepUntilOf(p).node;
    const bandNodes: number[] = [];
    for (let i = 0; i < kn.length; i++) if (kn[i] > lo && kn[i] <= hi) bandNodes.push(i);
    this.paintNodes(c, bandNodes, dpr * t.k);
    this.layers[j] = oc.transferToImageBitmap(); // rasterises here
  }

  /** Nodes, batched by look (one fill and one stroke per batch). Nodes under SMALL_NODE device
   * pixels across are drawn as octagons and plain squares (arcs cost several times more to
   * rasterise and look the same at that size). */
  private paintNodes(ctx: CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D, list: number[], scale: number): void {
    const lookOf = this.nLook;
    const batches: number[][] = [];
    for (const i of list) (batches[lookOf[i]] ??= []).push(i);
    const c = ctx as CanvasRenderingContext2D;
    const looks = this.looks();
    for (let b = 0; b < batches.length; b++) {
      const items = batches[b];
      if (!items) continue;
      const lk = looks[b % NODE_LOOKS];
      const dash = b >= NODE_LOOKS;
      c.globalAlpha = 1;
      c.beginPath();
      for (const i of items) this.nodeShape(c, i, lk.r, lk.round, lk.rx, scale);
      c.fillStyle = lk.fill;
      c.fill();
      if (lk.sw * scale >= 0.25 || lk.stroke !== "#FFFFFF") {
        c.strokeStyle = lk.stroke;
        c.lineWidth = lk.sw;
        c.setLineDash(dash ? [2, 1.5] : []);
        c.stroke();
      }
    }
    c.setLineDash([]);
  }

  private looks() {
    const r0 = this.layout!.nodeR;
    return NODE_LOOK.map((lk) => ({ ...lk, r: lk.r * r0 }));
  }

  private nodeShape(ctx: CanvasRenderingContext2D, i: number, r: number, round: boolean, rx: number, scale: number): void {
    const x = this.ng[2 * i];
    const y = this.ng[2 * i + 1];
    const small = 2 * r * scale < SMALL_NODE;
    if (round) {
      if (small) {
        const a = r * 0.4142; // octagon with its sides at distance r
        ctx.moveTo(x + r, y - a);
        ctx.lineTo(x + r, y + a);
        ctx.lineTo(x + a, y + r);
        ctx.lineTo(x - a, y + r);
        ctx.lineTo(x - r, y + a);
        ctx.lineTo(x - r, y - a);
        ctx.lineTo(x - a, y - r);
        ctx.lineTo(x + a, y - r);
        ctx.lineTo(x + r, y - a); // (no closePath(): in a long path it costs far more)
      } else {
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
    } else if (!small && typeof ctx.roundRect === "function") ctx.roundRect(x - r, y - r, 2 * r, 2 * r, rx);
    else ctx.rect(x - r, y - r, 2 * r, 2 * r);
  }

  /** The hovered and the selected node's rings. */
  private paintRings(ctx: CanvasRenderingContext2D, scale: number): void {
    const looks = this.looks();
    const ring = (i: number, w: number) => {
      if (!this.drawnN(i)) return;
      const lk = looks[this.nLook[i] % NODE_LOOKS];
      ctx.globalAlpha = 1;
      ctx.beginPath();
      this.nodeShape(ctx, i, lk.r, lk.round, lk.rx, scale);
      ctx.strokeStyle = COLORS.sel;
      ctx.lineWidth = w;
      ctx.stroke();
    };
    ring(this.hoverNode, 2);
    ring(this.selNode, 3);
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
        g.setAttribute("data-token", this.tokens[i] ?? "");
        g.removeAttribute("display");
        const [posT, tokT] = g.children as unknown as SVGTextElement[];
        posT.textContent = String(i);
        tokT.textContent = text;
        g.classList.toggle("is-target", i === this.targetPos);
        const pred = this.predictions[i]?.[0];
        (g.lastElementChild as SVGTitleElement).textContent =
          `position ${i}: ${JSON.stringify(this.tokens[i] ?? "")}${this.tokBytes(i)}` + (pred ? `\nnext: ${JSON.stringify(pred.token)} ${pct(pred.prob)}${bytesNote(pred.bytes)}` : "") + "\nclick: route to this position";
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
    // nodes: the live view paints them on the canvas too
    const gn = svg("g");
    for (const i of this.shownNodeList) {
      const lk = this.nodeLook(i);
      const paint = { fill: lk.fill, stroke: lk.stroke, "stroke-width": lk.sw, ...(lk.dash ? { "stroke-dasharray": "2 1.5" } : {}) };
      gn.append(
        lk.shape === "circle"
          ? svg("circle", { cx: lk.x, cy: lk.y, r: lk.r, ...paint })
          : svg("rect", { x: lk.x - lk.r, y: lk.y - lk.r, width: 2 * lk.r, height: 2 * lk.r, rx: lk.rx, ...paint }),
      );
    }
    g.append(gn, strip(this.gMarks));
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
