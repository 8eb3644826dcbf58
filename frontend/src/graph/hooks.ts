// The accessible hook elements: one paint-free SVG element per node and edge of the fetched graph
// (the data-testid=graph-node / graph-edge hooks, and the hover and click targets; the canvas
// paints). Hook elements are created once per fetched graph and stay attached: a threshold
// change only moves the data-testid attribute (which no CSS selector reads, so no style, layout
// or paint work follows) onto the drawn ones. Hooks are ordered by the threshold up to which
// they stay drawn (keepUntil), so the pruned ones always lie under every drawn one of their
// group and never take a pointer event from it. What is not attached when the graph appears is
// attached in idle time.

import type { EdgeKind } from "../types";
import { svg } from "../ui/dom";
import { keepUntilOf, type Pruned } from "./prune";
import { nodeXY } from "./layout";
import type { Scene } from "./scene";
import { NODE_LOOK, lookId } from "./style";
import { deltaOf } from "./diff";

const ATTACH_NOW = 1000; // hooks a threshold change may create and attach before its frame
const BG_SLICE_MS = 15; // idle-time hook work per step
const BG_CHUNK = 200; // hooks attached per DOM insertion

type Idle = (cb: () => void) => void;
export function idleCallback(timeout: number): Idle {
  const ric = (window as unknown as { requestIdleCallback?: (cb: () => void, o?: { timeout: number }) => void }).requestIdleCallback;
  return ric ? (cb) => ric(cb, { timeout }) : (cb) => setTimeout(cb, 16);
}

/** Hooks attached together go in a group of their own: a frame after more hooks are attached
 * then re-paints far less of the hook layer than with one flat list (measured: the time until
 * the hooks of a dense route are all attached falls by about a third). */
function chunkGroup(frag: DocumentFragment): SVGGElement {
  const g = svg("g", { class: "chunk" });
  g.appendChild(frag);
  return g;
}

const r1 = (v: number) => Math.round(v * 10) / 10;

export class Hooks {
  readonly gHits = svg("g", { class: "hits" }); // edge hooks (wide invisible hit strokes), in keep order
  readonly gNodes = svg("g", { class: "nodes" });
  nodeEl: (SVGElement | undefined)[] = [];
  edgeEl: (SVGElement | undefined)[] = []; // hit line: data-testid=graph-edge
  readonly elIndex = new WeakMap<Element, number>();
  /** The data-testid hooks match the drawn route exactly (one graph-edge per drawn edge, one
   * graph-node per drawn node). */
  inSync = true;
  /** Every hook of the fetched graph attached and placed, and the hooks in sync with the drawn
   * route: a threshold change only moves data-testid. */
  ready = false;
  // which hooks carry data-testid now (they follow pr, at once or in idle time: inSync)
  private shownN = new Uint8Array(0);
  private shownE = new Uint8Array(0);
  // hook order: indices sorted by keepUntil ascending (the drawn ones are a suffix); *Rank is the
  // inverse; hooks order[from..] are attached, the rest are created in the background
  private eOrder = new Int32Array(0);
  private eRank = new Int32Array(0);
  private nOrder = new Int32Array(0);
  private nRank = new Int32Array(0);
  private eFrom = 0;
  private nFrom = 0;
  private needE = 0;
  private needN = 0;
  // the geomVersion each hook was placed at
  private edgeGeom = new Uint32Array(0);
  private nodeGeom = new Uint32Array(0);
  private bgToken = 0;

  constructor(
    private s: Scene,
    private root: SVGSVGElement,
    /** The hooks caught up with the drawn route (the selection's hook may exist now). */
    private onSynced: () => void,
  ) {}

  /** A new fetched graph: no hook attached yet, the order made. */
  reset(): void {
    const p = this.s.p!;
    this.nodeEl = new Array(p.nodes.length);
    this.edgeEl = new Array(p.edges.length);
    this.edgeGeom = new Uint32Array(p.edges.length);
    this.nodeGeom = new Uint32Array(p.nodes.length);
    this.shownN = new Uint8Array(p.nodes.length);
    this.shownE = new Uint8Array(p.edges.length);
    this.setInSync(true);
    this.bgToken++;
    this.gHits.replaceChildren();
    this.gNodes.replaceChildren();
    this.makeOrder();
  }

  clear(): void {
    this.bgToken++;
    this.setInSync(true);
    this.gHits.replaceChildren();
    this.gNodes.replaceChildren();
  }

  /** Hook order: by the threshold up to which each stays drawn, then (edges) attention over FFN
   * over residual, then by weight; so among drawn hooks the ones that matter most lie on top. */
  private makeOrder(): void {
    const p = this.s.p!;
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
  }

  /** New node positions: re-place the drawn hooks now; the others when next attached or in idle time. */
  relayout(): void {
    const pr = this.s.pr;
    if (pr) {
      for (const i of pr.edgeList) this.placeEdge(i);
      for (const i of pr.nodeList) this.placeNode(i);
    }
    this.schedule();
  }

  private placeEdge(i: number): void {
    const hp = this.edgeEl[i];
    if (!hp || this.edgeGeom[i] === this.s.geomVersion) return;
    this.setHitGeom(hp, i);
    this.edgeGeom[i] = this.s.geomVersion;
  }

  private placeNode(i: number): void {
    const el = this.nodeEl[i];
    if (!el || this.nodeGeom[i] === this.s.geomVersion) return;
    const [x, y] = nodeXY(this.s.layout!, this.s.p!.nodes[i]);
    if (el.tagName === "circle") {
      el.setAttribute("cx", String(x));
      el.setAttribute("cy", String(y));
    } else {
      const w = Number(el.getAttribute("width"));
      el.setAttribute("x", String(x - w / 2));
      el.setAttribute("y", String(y - w / 2));
    }
    this.nodeGeom[i] = this.s.geomVersion;
  }

  /** A node's hook: the node's shape, painting nothing (the canvas paints the node), hit-tested
   * over its fill area. data-testid is set while the node is drawn. */
  private createNode(i: number): SVGElement {
    const n = this.s.p!.nodes[i];
    const target = this.s.isTarget(i);
    const lk = NODE_LOOK[lookId(n.kind, target)];
    const [x, y] = nodeXY(this.s.layout!, n);
    const r = lk.r * this.s.layout!.nodeR;
    const el = lk.round ? svg("circle", { cx: x, cy: y, r }) : svg("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r, rx: lk.rx });
    el.setAttribute("class", `node n-${n.kind}${target ? " target" : ""}`);
    el.setAttribute("data-id", n.id);
    el.setAttribute("data-kind", n.kind);
    el.setAttribute("data-layer", String(n.layer));
    el.setAttribute("data-pos", String(n.pos));
    this.elIndex.set(el, i);
    this.nodeEl[i] = el;
    this.nodeGeom[i] = this.s.geomVersion;
    return el;
  }

  /** Hit geometry of an edge as a <line> (straight edges) or a <polyline> (attention curves):
   * unlike a path's `d`, their geometry attributes are not CSS properties, so thousands of hit
   * elements share one computed style (style recalculation is what made dense redraws slow). */
  private hitGeom(i: number): { line?: [number, number, number, number]; points?: string } {
    const L = this.s.layout!;
    const p = this.s.p!;
    const e = p.edges[i];
    const [x1, y1] = nodeXY(L, p.nodes[e.s]);
    const [x2, y2] = nodeXY(L, p.nodes[e.t]);
    if (e.kind !== "attn") {
      // a perfectly vertical line has an empty bounding box; lean it by a hair so the element
      // has a size (browsers and test drivers treat empty boxes as invisible)
      if (Math.abs(x1 - x2) < 0.5) return { line: [r1(x1 - 0.6), r1(y1), r1(x2 + 0.6), r1(y2)] };
      return { line: [r1(x1), r1(y1), r1(x2), r1(y2)] };
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
      pts += `${r1(a * x1 + b * c1x + c * c2x + d * x2)},${r1(a * y1 + b * c1y + c * c2y + d * y2)} `;
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
    const p = this.s.p!;
    const e = p.edges[i];
    const hp: SVGElement = svg(e.kind === "attn" ? "polyline" : "line", {
      class: `edge e-${e.kind}`,
      "data-kind": e.kind,
      "data-source": e.source,
      "data-target": e.target,
      "data-weight": String(e.weight),
      "data-layer": String(p.nodes[e.t].layer),
    });
    // the visible stroke is painted on the canvas; this transparent wide stroke is only the
    // hit target and test hook (the SVG export builds real strokes); data-testid is set while
    // the edge is drawn
    if (deltaOf(e) !== null) hp.setAttribute("data-delta", String(deltaOf(e))); // a comparison's edge (diff.ts)
    this.setHitGeom(hp, i);
    this.elIndex.set(hp, i);
    this.edgeEl[i] = hp;
    this.edgeGeom[i] = this.s.geomVersion;
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

  /** The drawn route changed (s.pr). When every hook it needs is attached (the usual case once
   * the idle-time preparation is done, or a change that needs only a few new ones) the
   * data-testid moves happen now, before the frame. Otherwise (a change to a dense threshold
   * soon after the graph appears) creating and attaching thousands of hooks would cost several
   * hundred ms of script, style, layout and paint before the frame: the frame paints the canvas
   * alone and the hooks are brought in line afterwards, in short idle-time chunks (inSync is
   * false until then; hover and clicks meanwhile act on the drawn route, never on a stale hook). */
  render(pr: Pruned): void {
    // the drawn ones are a suffix of the hook order: hooks order[needE..] must be attached
    let k = this.eOrder.length;
    for (const i of pr.edgeList) if (this.eRank[i] < k) k = this.eRank[i];
    this.needE = k;
    k = this.nOrder.length;
    for (const i of pr.nodeList) if (this.nRank[i] < k) k = this.nRank[i];
    this.needN = k;
    const missing = Math.max(0, this.eFrom - this.needE) + Math.max(0, this.nFrom - this.needN);
    if (missing <= ATTACH_NOW) this.sync();
    else this.setInSync(false);
  }

  private setInSync(v: boolean): void {
    if (this.inSync === v) return;
    this.inSync = v;
    // for tests: [data-testid=graph][data-hooks=sync] (no CSS selector reads it)
    this.root.setAttribute("data-hooks", v ? "sync" : "pending");
  }

  /** Attach the hooks the drawn route needs and move data-testid onto exactly the drawn ones. */
  private sync(): void {
    const pr = this.s.pr;
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

  /** In idle time: first bring the hooks in line with the drawn route (attach the missing ones,
   * the drawn ones first, then move data-testid), then attach the hooks not attached yet (lowest
   * keep order last) and re-place attached hooks whose geometry is stale after a re-layout, so
   * that a threshold change later only moves data-testid. Each step does a few ms of work, so
   * that an input arriving meanwhile waits little (each step's new hooks cost about as much
   * again in the next frame's style, layout and paint). */
  schedule(): void {
    const token = ++this.bgToken; // a newer job replaces this one
    const p = this.s.p;
    this.ready = false;
    if (!p) return;
    let placeE = 0;
    let placeN = 0;
    const idle = idleCallback(300);
    const step = () => {
      if (token !== this.bgToken || this.s.p !== p) return;
      // a fixed slice, not the idle deadline: the deadline is often a few ms while frames keep
      // coming, and every slice costs a frame that walks the hooks
      const until = performance.now() + BG_SLICE_MS;
      if (!this.inSync) {
        const pr = this.s.pr!;
        while (performance.now() < until && (this.eFrom > this.needE || this.nFrom > this.needN)) {
          if (this.eFrom > this.needE) this.attachEdges(Math.max(this.needE, this.eFrom - BG_CHUNK), pr.edge);
          else this.attachNodes(Math.max(this.needN, this.nFrom - BG_CHUNK), pr.node);
        }
        if (this.eFrom <= this.needE && this.nFrom <= this.needN) {
          this.sync();
          this.onSynced();
        }
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
      else this.ready = true;
    };
    idle(step);
  }

  /** The node or edge index of a hook element (undefined: not a hook). */
  indexOf(el: Element): number | undefined {
    return this.elIndex.get(el);
  }

  isEdgeHook(el: Element): boolean {
    const i = this.elIndex.get(el);
    return i !== undefined && this.edgeEl[i] === el;
  }
}
