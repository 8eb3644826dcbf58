// The overview strip of a long prompt, shown while the token columns do not all fit in the graph
// area: every column as a tick (the route's columns dark, the targets orange), the visible window
// as a rectangle; a click or a drag pans there. Hooks: data-testid=graph-minimap and
// graph-minimap-window.

import { h } from "../ui/dom";
import { AXIS_Y_W, type Camera } from "./camera";
import type { Scene } from "./scene";
import { COLORS } from "./style";

export const MINIMAP_H = 18; // the room the fit keeps for the strip at the top of the graph area

export class Minimap {
  readonly el: HTMLDivElement;
  private cv: HTMLCanvasElement;
  private win: HTMLDivElement;
  private queued = false;
  private drawnKey = "";
  private drawnPr: unknown = null;

  constructor(
    private s: Scene,
    private cam: Camera,
  ) {
    this.cv = h("canvas", { class: "graph-minimap-cols", "aria-hidden": "true" });
    this.win = h("div", { class: "graph-minimap-window", "data-testid": "graph-minimap-window" });
    this.el = h(
      "div",
      { class: "graph-minimap", "data-testid": "graph-minimap", style: `left:${AXIS_Y_W + 4}px`, title: "overview of every token column: click or drag to pan", hidden: true },
      this.cv,
      this.win,
    );
    let dragging = false;
    const pan = (e: PointerEvent) => {
      const c = this.s.layout ? this.cam.contentBox() : null;
      if (!c) return;
      const r = this.el.getBoundingClientRect();
      const f = Math.min(1, Math.max(0, (e.clientX - r.left - 1) / Math.max(1, r.width - 2)));
      this.cam.centreOn(c.x0 + f * (c.x1 - c.x0));
    };
    this.el.addEventListener("pointerdown", (e) => {
      if (e.button) return;
      e.preventDefault();
      e.stopPropagation();
      dragging = true;
      this.el.setPointerCapture?.(e.pointerId);
      pan(e);
    });
    this.el.addEventListener("pointermove", (e) => dragging && pan(e));
    const stop = () => (dragging = false);
    this.el.addEventListener("pointerup", stop);
    this.el.addEventListener("pointercancel", stop);
  }

  queue(): void {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.update();
    });
  }

  /** Show the strip while the content is wider than the graph area, and place the window. */
  update(): void {
    const L = this.s.layout;
    if (!L || !this.s.p) {
      this.el.hidden = true;
      return;
    }
    const c = this.cam.contentBox();
    const t = this.cam.t;
    const s = this.cam.screenBox(0, false);
    const left = t.applyX(c.x0);
    const right = t.applyX(c.x1);
    const show = left < s.x0 - 1 || right > s.x1 + 1;
    this.el.hidden = !show;
    if (!show) return;
    let W = Math.max(20, this.cam.w - AXIS_Y_W - 14);
    this.el.style.width = `${W}px`;
    W -= 2; // inside the border
    this.drawColumns(W, c.x0, c.x1);
    // the visible window
    const span = Math.max(1e-9, c.x1 - c.x0);
    const g0 = Math.max(c.x0, t.invertX(s.x0));
    const g1 = Math.min(c.x1, t.invertX(s.x1));
    const a = ((g0 - c.x0) / span) * W;
    const b = ((g1 - c.x0) / span) * W;
    this.win.style.left = `${a.toFixed(1)}px`;
    this.win.style.width = `${Math.max(3, b - a).toFixed(1)}px`;
  }

  private drawColumns(W: number, x0: number, x1: number): void {
    const L = this.s.layout!;
    const dpr = window.devicePixelRatio || 1;
    const H = 10; // the strip's inner height (styles.css)
    const key = `${this.s.geomVersion}|${W}|${dpr}|${this.s.targets.join(",")}`;
    if (key === this.drawnKey && this.drawnPr === this.s.pr) return;
    this.drawnKey = key;
    this.drawnPr = this.s.pr;
    const cv = this.cv;
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
    cv.style.width = `${W}px`;
    cv.style.height = `${H}px`;
    const ctx = cv.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const used = this.s.routeColumns() ?? new Uint8Array(L.colX.length);
    const f = W / Math.max(1e-9, x1 - x0);
    for (let i = 0; i < L.colX.length; i++) {
      const a = (L.colX[i] - L.colW[i] / 2 - x0) * f;
      const w = Math.max(0.6, L.colW[i] * f - (L.colW[i] * f > 2 ? 0.5 : 0));
      const target = this.s.targetCols[i] === 1;
      ctx.fillStyle = target ? COLORS.target : used[i] ? COLORS.block : "#C5CCD6";
      const hh = target || used[i] ? H : H * 0.45;
      ctx.fillRect(a, H - hh, w, hh);
    }
  }
}
