// The canvas painter: the layer bands, the drawn edges (one stroke per kind and weight bucket,
// weakest first, so the strongest lie on top; thin strokes as hairlines) and the drawn nodes
// (batched by look), the lit route over a veil, the selection and hover rings. Dense routes
// blit cached layers (layercache.ts) instead of stroking every edge.

import type { EdgeKind } from "../types";
import { clamp } from "../ui/dom";
import type { Camera } from "./camera";
import { nodeXY } from "./layout";
import { LayerCache } from "./layercache";
import type { Scene } from "./scene";
import { COLORS, NODE_LOOK, NODE_LOOKS, edgeStyle, lookId } from "./style";
import { DIFF_CLASS_COLOR, diffClass } from "./diff";

const HAIRLINE = 1.5; // device pixels
const SMALL_NODE = 10; // device pixels across
export const NB = 32; // weight buckets per edge kind

export type Ctx2D = CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;

/** What the painter reads of the hover and selection state (hover.ts). */
export interface Lit {
  focusOn: boolean;
  hlEdges: Set<number>;
  hlNodes: Set<number>;
  selEdge: number;
  selNode: number;
  hoverNode: number;
}

export class Painter {
  readonly ctx: CanvasRenderingContext2D;
  readonly cache: LayerCache;
  private queued = false;
  // canvas geometry, recomputed when the layout changes: per edge its end points and (attention)
  // control points, per node its centre and look
  private cgVersion = -1;
  private eg = new Float64Array(0); // 8 per edge: x1 y1 c1x c1y c2x c2y x2 y2
  eBucket = new Uint8Array(0);
  /** Per edge: its colour class (diff.ts diffClass; 0: by kind). */
  eClass = new Uint8Array(0);
  private ng = new Float64Array(0); // 2 per node: x y
  nLook = new Uint8Array(0);

  constructor(
    private s: Scene,
    readonly canvas: HTMLCanvasElement,
    private cam: Camera,
    private lit: Lit,
    private bands: SVGGElement,
  ) {
    this.ctx = canvas.getContext("2d")!;
    this.cache = new LayerCache(s, this, cam);
  }

  /** Device pixels per CSS pixel of the canvas. */
  dpr(): number {
    return this.canvas.width / Math.max(1, this.cam.w);
  }

  queue(): void {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.draw();
    });
  }

  geometry(): void {
    const p = this.s.p!;
    if (this.cgVersion === this.s.geomVersion && this.eg.length === p.edges.length * 8) return;
    const L = this.s.layout!;
    const nodes = p.nodes;
    const ng = new Float64Array(nodes.length * 2);
    const look = new Uint8Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) {
      const [x, y] = nodeXY(L, nodes[i]);
      ng[2 * i] = x;
      ng[2 * i + 1] = y;
      const n = nodes[i];
      look[i] = lookId(n.kind, this.s.isTarget(i)) + (n.degenerate ? NODE_LOOKS : 0);
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
    this.eClass = Uint8Array.from(p.edges, diffClass);
    this.ng = ng;
    this.nLook = look;
    this.cgVersion = this.s.geomVersion;
  }

  /** Set the graph -> device pixel transform of a context for the current view. */
  viewTransform(c: Ctx2D, dpr: number): void {
    const t = this.cam.t;
    c.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);
  }

  /** Paint the background, the layer bands, the drawn edges and the drawn nodes. */
  draw(): void {
    const ctx = this.ctx;
    const cv = this.canvas;
    const dpr = this.dpr();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = 1;
    ctx.fillStyle = "#FFFFFF";
    ctx.fillRect(0, 0, cv.width, cv.height);
    const p = this.s.p;
    if (!this.s.layout || !p) return;
    const k = this.cam.t.k;
    this.viewTransform(ctx, dpr);
    // bands (the SVG copies are hidden in the live view and kept for the export)
    for (const r of Array.from(this.bands.children)) {
      ctx.globalAlpha = Number(r.getAttribute("opacity") ?? 1);
      ctx.fillStyle = r.getAttribute("fill")!;
      ctx.fillRect(Number(r.getAttribute("x")), Number(r.getAttribute("y")), Number(r.getAttribute("width")), Number(r.getAttribute("height")));
    }
    const pr = this.s.pr;
    if (!pr) return;
    this.geometry();
    const lit = this.lit;
    const hl: number[] = [];
    // a cached layer holds every edge above its level: use the lowest level at or above the
    // threshold and draw live only the drawn edges under it (the paint order is by level band
    // first, so the picture is the same with or without the cache)
    // order: edges under the layer's level, the layer (its edges, then its nodes), the nodes
    // under its level; nodes lie over every edge either way
    const cache = this.cache;
    const layer = cache.forFrame(pr.tau);
    const live: number[] = [];
    for (const i of pr.edgeList) {
      if (lit.focusOn && lit.hlEdges.has(i)) hl.push(i);
      if (!layer || cache.eBand[i] < layer.band) live.push(i);
    }
    this.strokeEdges(ctx, live, dpr, k, -1);
    if (layer) {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.globalAlpha = 1;
      ctx.drawImage(layer.bmp, 0, 0);
      this.viewTransform(ctx, dpr);
    } else cache.schedule();
    this.paintNodes(ctx, layer ? pr.nodeList.filter((i) => cache.nBand[i] < layer.band) : pr.nodeList, dpr * k);
    if (lit.focusOn) {
      // a route is lit: veil the drawing, then draw the route again over the veil
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.globalAlpha = 0.85;
      ctx.fillStyle = "#FFFFFF";
      ctx.fillRect(0, 0, cv.width, cv.height);
      this.viewTransform(ctx, dpr);
    }
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const i of hl) {
      const e = p.edges[i];
      const st = edgeStyle(e.kind, e.weight);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = this.edgeColor(i);
      ctx.lineWidth = st.width / k;
      ctx.beginPath();
      this.traceEdge(ctx, i);
      ctx.stroke();
    }
    if (this.s.drawnE(lit.selEdge)) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = COLORS.sel;
      ctx.lineWidth = 3.5 / k;
      ctx.beginPath();
      this.traceEdge(ctx, lit.selEdge);
      ctx.stroke();
    }
    if (lit.focusOn) this.paintNodes(ctx, pr.nodeList.filter((i) => lit.hlNodes.has(i)), dpr * k);
    this.paintRings(ctx, dpr * k);
    ctx.globalAlpha = 1;
    ctx.setLineDash([]);
  }

  /** An edge's colour: its kind's, or a comparison's by the sign of its delta. */
  edgeColor(i: number): string {
    const c = this.eClass[i];
    return c ? DIFF_CLASS_COLOR[c] : COLORS[this.s.p!.edges[i].kind];
  }

  private traceEdge(ctx: Ctx2D, i: number): void {
    const eg = this.eg;
    const o = 8 * i;
    ctx.moveTo(eg[o], eg[o + 1]);
    if (this.s.p!.edges[i].kind === "attn") ctx.bezierCurveTo(eg[o + 2], eg[o + 3], eg[o + 4], eg[o + 5], eg[o + 6], eg[o + 7]);
    else ctx.lineTo(eg[o + 6], eg[o + 7]);
  }

  /** Stroke edges in paint order: by level band (weakest first), then kind (residual, FFN,
   * attention), then weight bucket; one stroke per (band, kind, bucket). alpha >= 0 overrides
   * the opacity. */
  strokeEdges(ctx: Ctx2D, list: number[], dpr: number, k: number, alpha: number): void {
    const p = this.s.p!;
    const eb = this.eBucket;
    const band = this.cache.eBand;
    const nb = 3 * NB;
    const buckets: number[][] = [];
    const cls = this.eClass; // a comparison's colour classes split the buckets (4 per bucket)
    for (const i of list) (buckets[((band[i] + 1) * nb + eb[i]) * 4 + cls[i]] ??= []).push(i);
    const kinds: EdgeKind[] = ["resid", "ffn", "attn"];
    const c = ctx as CanvasRenderingContext2D;
    c.lineJoin = "round";
    for (let key = 0; key < buckets.length; key++) {
      const bl = buckets[key];
      if (!bl) continue;
      const kind = kinds[Math.floor(((key >> 2) % nb) / NB)];
      // style of the bucket's mean weight (non-scaling widths: screen pixels)
      let sw = 0;
      for (const i of bl) sw += p.edges[i].weight;
      const st = edgeStyle(kind, sw / bl.length);
      // strokes under HAIRLINE device pixels are drawn 1 px wide: the rasteriser draws those as
      // hairlines, several times faster than wider anti-aliased strokes (the software raster of
      // ~1.2 px curves was most of a dense frame). Their opacity is kept as it is (not scaled
      // down to the thinner stroke's ink), so the lightest edges still read; strokes between 1
      // and 1.5 px keep their ink in the opacity.
      const dev = st.width * dpr;
      const hair = dev < HAIRLINE;
      c.strokeStyle = key & 3 ? DIFF_CLASS_COLOR[key & 3] : COLORS[kind];
      c.globalAlpha = Math.min(1, (alpha >= 0 ? alpha : st.opacity) * (hair ? Math.max(1, dev) : 1));
      c.lineWidth = hair ? 1 / (dpr * k) : st.width / k;
      c.lineCap = hair ? "butt" : "round";
      c.beginPath();
      for (const i of bl) this.traceEdge(c, i);
      c.stroke();
    }
  }

  /** Nodes, batched by look (one fill and one stroke per batch). Nodes under SMALL_NODE device
   * pixels across are drawn as octagons and plain squares (arcs cost several times more to
   * rasterise and look the same at that size). */
  paintNodes(ctx: Ctx2D, list: number[], scale: number): void {
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
    const r0 = this.s.layout!.nodeR;
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
      if (!this.s.drawnN(i)) return;
      const lk = looks[this.nLook[i] % NODE_LOOKS];
      ctx.globalAlpha = 1;
      ctx.beginPath();
      this.nodeShape(ctx, i, lk.r, lk.round, lk.rx, scale);
      ctx.strokeStyle = COLORS.sel;
      ctx.lineWidth = w;
      ctx.stroke();
    };
    ring(this.lit.hoverNode, 2);
    ring(this.lit.selNode, 3);
  }
}
