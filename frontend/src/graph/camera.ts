// Zoom and pan (d3-zoom: a transform on the SVG's viewport group and on the canvas painting),
// the fit (F, the fit button, the first view, a resize) and the moves the app asks for.
// The fit frames the drawn ROUTE, not every token column: the route fills the graph area's
// height; a route too wide to show legibly that way is fitted to the height with the target's
// end in view (the minimap then shows where the view lies).

import { select, type Selection as D3Sel } from "d3-selection";
import { zoom, zoomIdentity, type ZoomBehavior, type ZoomTransform } from "d3-zoom";
import { clamp } from "../ui/dom";
import { levelOf, levelY } from "./layout";
import type { Scene } from "./scene";

export const AXIS_X_H = 46; // the token axis, at the bottom
export const AXIS_Y_W = 46; // the layer axis, on the left
const MAX_FIT = 3; // the fit zooms in at most this far (a short route is not blown up further)
/** A route is fitted whole when that leaves it at least this share of the fitted-to-height (or
 * of scale 1, whichever is less); a wider one is fitted to the height (test: the route fills at
 * least half the height). */
const WHOLE_MIN = 0.62;
const MARK_H = 18; // the target marks above the top row

export interface Box {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

export class Camera {
  readonly zoomer: ZoomBehavior<SVGSVGElement, unknown>;
  readonly d3svg: D3Sel<SVGSVGElement, unknown, null, undefined>;
  t: ZoomTransform = zoomIdentity;
  w = 800;
  h = 500;
  /** The user panned or zoomed since the last fit. */
  userMoved = false;
  /** Room kept at the top of the graph area for the minimap (set by the fit). */
  topInset = 0;

  constructor(
    private s: Scene,
    private svgEl: SVGSVGElement,
    onZoom: () => void,
  ) {
    this.d3svg = select(svgEl);
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
        onZoom();
      });
    this.d3svg.call(this.zoomer);
    // horizontal wheel and shift+wheel pan
    svgEl.addEventListener(
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
  }

  /** Measure the drawing area; true when its size changed. */
  measure(): boolean {
    const r = this.svgEl.getBoundingClientRect();
    const w = Math.max(100, r.width);
    const h = Math.max(100, r.height);
    const changed = Math.abs(w - this.w) >= 0.5 || Math.abs(h - this.h) >= 0.5;
    this.w = w;
    this.h = h;
    return changed;
  }

  size(): { w: number; h: number } {
    const r = this.svgEl.getBoundingClientRect();
    return { w: r.width || this.w, h: r.height || this.h };
  }

  /** The screen area not covered by the axes (and the minimap when it is kept room for);
   * `fresh`: measured now, else the size at the last resize (no forced layout in a frame). */
  screenBox(inset = this.topInset, fresh = true): Box {
    const { w, h } = fresh ? this.size() : this;
    return { x0: AXIS_Y_W + 4, x1: w - 10, y0: 4 + inset, y1: h - AXIS_X_H - 4 };
  }

  /** Every token column x every layer row, in graph units (target marks included). */
  contentBox(): Box {
    const L = this.s.layout!;
    const n = L.colX.length;
    return {
      x0: L.colX[0] - L.colW[0] / 2,
      x1: L.colX[n - 1] + L.colW[n - 1] / 2,
      y0: levelY(L, L.nLevels - 1) - MARK_H,
      y1: levelY(L, 0) + L.rowH / 2 + 2,
    };
  }

  /** The drawn route's box in graph units: the columns and rows its nodes take (before the
   * first render: the fetched graph's), the target marks above it. */
  routeBox(): Box {
    const L = this.s.layout!;
    const p = this.s.p!;
    const list = this.s.pr ? this.s.pr.nodeList : p.nodes.map((n) => n.idx);
    if (!list.length) return this.contentBox();
    let x0 = Infinity, x1 = -Infinity, lo = Infinity, hi = -Infinity;
    for (const i of list) {
      const n = p.nodes[i];
      const a = L.colX[n.pos] - L.colW[n.pos] / 2;
      if (a < x0) x0 = a;
      if (a + L.colW[n.pos] > x1) x1 = a + L.colW[n.pos];
      const lv = levelOf(n.kind, n.layer, L.parallel);
      if (lv < lo) lo = lv;
      if (lv > hi) hi = lv;
    }
    for (const c of this.s.targets) {
      x0 = Math.min(x0, L.colX[c] - L.colW[c] / 2);
      x1 = Math.max(x1, L.colX[c] + L.colW[c] / 2);
    }
    const top = levelY(L, hi) - (this.s.targets.length ? MARK_H : L.rowH / 2);
    return { x0, x1, y0: top, y1: levelY(L, lo) + L.rowH / 2 + 2 };
  }

  /** The view a fit gives, and whether the content is then wider than the graph area. */
  private fitTransform(inset: number): { k: number; x: number; y: number; wide: boolean } {
    const r = this.routeBox();
    const c = this.contentBox();
    const s = this.screenBox(inset);
    const sw = s.x1 - s.x0;
    const sh = s.y1 - s.y0;
    const rw = Math.max(1, r.x1 - r.x0);
    const rh = Math.max(1, r.y1 - r.y0);
    const ky = Math.min(MAX_FIT, sh / rh);
    const kx = sw / rw;
    let k: number;
    let x: number;
    // a route that fits whole at a legible scale is shown whole, even where filling the height
    // would zoom in further (a model of few layers: its rows are at their tallest already)
    if (kx >= WHOLE_MIN * Math.min(1, ky)) {
      k = Math.min(kx, ky);
      x = s.x0 + (sw - rw * k) / 2 - r.x0 * k;
    } else {
      // too wide: fit to the height and keep the (last) target's end in view, never past the
      // first column
      k = ky;
      const L = this.s.layout!;
      const last = this.s.targets[this.s.targets.length - 1];
      const focusX = last !== undefined ? L.colX[last] + L.colW[last] / 2 : r.x1;
      x = Math.min(s.x0 - c.x0 * k, s.x1 - 24 - focusX * k);
    }
    const y = s.y0 + (sh - rh * k) / 2 - r.y0 * k;
    return { k, x, y, wide: (c.x1 - c.x0) * k > sw + 1 };
  }

  /** Frame the route (see the top of this file). `minimapH`: the room the minimap takes when
   * the content does not fit in the width. */
  fit(minimapH: number): void {
    if (!this.s.layout || !this.s.p) return;
    let f = this.fitTransform(0);
    this.topInset = 0;
    if (f.wide && minimapH > 0) {
      this.topInset = minimapH;
      f = this.fitTransform(minimapH);
    }
    this.d3svg.call(this.zoomer.transform, zoomIdentity.translate(f.x, f.y).scale(f.k));
    this.userMoved = false;
  }

  zoomBy(f: number): void {
    const { w, h } = this.size();
    this.zoomer.scaleBy(this.d3svg, f, [w / 2, h / 2]);
    this.userMoved = true;
  }

  /** Pan so that a token column is visible. */
  reveal(pos: number): void {
    if (!this.s.layout) return;
    const x = this.t.applyX(this.s.layout.colX[pos]);
    const { w } = this.size();
    if (x < AXIS_Y_W + 20 || x > w - 20) this.zoomer.translateBy(this.d3svg, (w / 2 - x) / this.t.k, 0);
  }

  /** Pan horizontally so that graph x `gx` is at the centre of the graph area, never showing
   * more than a margin beyond the first or last column. */
  centreOn(gx: number): void {
    if (!this.s.layout) return;
    const s = this.screenBox();
    const c = this.contentBox();
    const k = this.t.k;
    let x = (s.x0 + s.x1) / 2 - gx * k;
    if ((c.x1 - c.x0) * k > s.x1 - s.x0) x = clamp(x, s.x1 - c.x1 * k, s.x0 - c.x0 * k);
    this.userMoved = true;
    this.d3svg.call(this.zoomer.transform, zoomIdentity.translate(x, this.t.y).scale(k));
  }

  /** Keep graph x `gx` at screen x `sx` (the same zoom). */
  keepAt(gx: number, sx: number): void {
    this.zoomer.translateBy(this.d3svg, (sx - this.t.applyX(gx)) / this.t.k, 0);
  }
}
