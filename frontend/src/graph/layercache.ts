// Cached canvas layers for dense routes: levels from the fetch threshold up, 1.25x apart, while
// at least LAYER_MIN edges stay drawn above the level; layer j holds every edge and node kept
// above level j, rasterised once per view (transform, geometry, pixel ratio) in idle time. A
// threshold change then blits the lowest layer at or above it and strokes only the edges under
// that level.

import { keepUntilOf } from "./prune";
import { idleCallback } from "./hooks";
import type { Camera } from "./camera";
import type { Painter } from "./paint";
import type { Scene } from "./scene";

const LAYER_MIN = 3000; // edges above a threshold level worth a cached canvas layer
const MAX_LAYERS = 8;
const LAYER_PIXELS = 24e6;

export class LayerCache {
  private levels: number[] = [];
  eBand = new Int8Array(0); // highest level index below the edge's keepUntil (-1: none)
  nBand = new Int8Array(0); // the same for nodes
  private layers: (ImageBitmap | null)[] = [];
  private key = "";
  private token = 0;
  private timer: number | undefined;
  private first = false;
  private w = 0;
  private h = 0;
  /** Every cached layer of the current view is built (or none is worth building). */
  ready = false;

  constructor(
    private s: Scene,
    private painter: Painter,
    private cam: Camera,
  ) {}

  /** A new fetched graph: its levels, and the first frame builds the layers before it paints. */
  plan(): void {
    const p = this.s.p!;
    const ku = keepUntilOf(p);
    const ek = ku.edge;
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
    const cv = this.painter.canvas;
    const maxLayers = Math.max(0, Math.min(MAX_LAYERS, Math.floor(LAYER_PIXELS / Math.max(1, cv.width * cv.height))));
    for (let lv = base; levels.length < maxLayers && above(lv) >= LAYER_MIN; lv *= 1.25) levels.push(lv);
    this.levels = levels;
    const bandOf = (v: number) => {
      let b = -1;
      while (b + 1 < levels.length && v > levels[b + 1]) b++;
      return b;
    };
    this.eBand = Int8Array.from(ek, bandOf);
    this.nBand = Int8Array.from(ku.node, bandOf);
    this.drop();
    this.first = true;
  }

  /** The layers' key: geometry, transform and pixel ratio. The canvas size is not in it: layers
   * (anchored at the canvas's top left) stay valid while they cover it (covers), so the
   * drawing area shrinking a little after the graph appears does not throw them away. */
  private viewKey(): string {
    const t = this.cam.t;
    return `${this.s.geomVersion}|${t.k}|${t.x}|${t.y}|${this.painter.dpr()}`;
  }

  private covers(): boolean {
    const cv = this.painter.canvas;
    return cv.width <= this.w && cv.height <= this.h;
  }

  drop(): void {
    for (const b of this.layers) b?.close();
    this.layers = [];
    this.key = "";
    this.token++;
    this.ready = this.levels.length === 0;
  }

  /** The cached layer for threshold tau in this frame: on the first frame of a new graph the
   * layers are built before it is painted (a change to a dense threshold right after the graph
   * appears then blits them instead of rastering tens of thousands of edges in its frame). */
  forFrame(tau: number): { band: number; bmp: ImageBitmap } | null {
    let layer = this.layerFor(tau);
    if (!layer && this.first) {
      this.first = false;
      this.buildNow();
      layer = this.layerFor(tau);
    }
    return layer;
  }

  /** The cached layer for threshold tau: the lowest level >= tau that is built for this view. */
  private layerFor(tau: number): { band: number; bmp: ImageBitmap } | null {
    if (this.key !== this.viewKey() || !this.covers()) {
      if (this.layers.length || this.key) this.drop();
      return null;
    }
    for (let j = 0; j < this.levels.length; j++) {
      if (this.levels[j] < tau) continue;
      const bmp = this.layers[j];
      return bmp ? { band: j, bmp } : null;
    }
    return null;
  }

  private begin(): void {
    this.drop();
    this.key = this.viewKey();
    this.w = this.painter.canvas.width;
    this.h = this.painter.canvas.height;
  }

  /** Once the view rests, build the layers in idle time, top level first. */
  schedule(): void {
    if (!this.levels.length || typeof OffscreenCanvas === "undefined") return;
    const key = this.viewKey();
    if (this.key === key && this.covers()) return; // built or being built for this view
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => {
      if (this.viewKey() !== key || !this.s.p || !this.s.layout) return;
      this.begin();
      const token = this.token;
      const p = this.s.p;
      let j = this.levels.length - 1;
      const idle = idleCallback(500);
      const step = () => {
        if (token !== this.token || this.s.p !== p || this.viewKey() !== key || !this.covers()) return;
        this.build(j--);
        if (j >= 0) idle(step);
        else {
          this.ready = true;
          this.painter.queue();
        }
      };
      idle(step);
    }, 150);
  }

  private buildNow(): void {
    if (!this.levels.length || typeof OffscreenCanvas === "undefined" || !this.s.p || !this.s.layout) return;
    clearTimeout(this.timer);
    this.begin();
    for (let j = this.levels.length - 1; j >= 0; j--) this.build(j);
    this.ready = true;
  }

  /** Rasterise layer j: the band j edges, layer j+1 over them, the band j nodes over that. */
  private build(j: number): void {
    const p = this.s.p!;
    const painter = this.painter;
    painter.geometry();
    const oc = new OffscreenCanvas(this.w, this.h);
    const c = oc.getContext("2d")!;
    const dpr = painter.dpr();
    const k = this.cam.t.k;
    painter.viewTransform(c, dpr);
    const lo = this.levels[j];
    const hi = j + 1 < this.levels.length ? this.levels[j + 1] : Infinity;
    const ku = keepUntilOf(p);
    const band: number[] = [];
    for (let i = 0; i < ku.edge.length; i++) if (ku.edge[i] > lo && ku.edge[i] <= hi) band.push(i);
    painter.strokeEdges(c, band, dpr, k, -1);
    const above = this.layers[j + 1];
    if (above) {
      c.setTransform(1, 0, 0, 1, 0, 0);
      c.globalAlpha = 1;
      c.drawImage(above, 0, 0);
      painter.viewTransform(c, dpr);
    }
    const bandNodes: number[] = [];
    for (let i = 0; i < ku.node.length; i++) if (ku.node[i] > lo && ku.node[i] <= hi) bandNodes.push(i);
    painter.paintNodes(c, bandNodes, dpr * k);
    this.layers[j] = oc.transferToImageBitmap(); // rasterises here
  }
}
