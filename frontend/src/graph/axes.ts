// The token axis (bottom) and the layer axis (left), pinned to the graph area's edges and drawn
// for the current zoom by the label rule of labels.ts. A token label is a g.xlabel[data-pos]
// (visible: no `display` attribute; classes is-target / is-selected / compact); a click on it
// routes to that position (view.ts). Layer labels use the one layer numbering (layers.ts):
// "L<l>" at each block's output row, "emb" at the embedding row.

import { bytesNote, pct, svg } from "../ui/dom";
import { layerName } from "../layers";
import { AXIS_X_H, AXIS_Y_W, type Camera } from "./camera";
import { levelOf, levelY } from "./layout";
import { MONO, POS_SIZE, SANS, SMALL_SIZE, TOK_SIZE, UPRIGHT_POS, planLayerLabels, planTokenLabels, type ColumnSpot } from "./labels";
import type { Scene } from "./scene";

export class Axes {
  readonly gX = svg("g", { class: "axis axis-x" });
  readonly gY = svg("g", { class: "axis axis-y" });
  private xBg = svg("rect", { class: "axis-bg", x: 0, height: AXIS_X_H });
  private yBg = svg("rect", { class: "axis-bg", x: 0, y: 0, width: AXIS_Y_W });
  private xLabels: SVGGElement[] = [];
  private yLabels: SVGTextElement[] = [];
  private queued = false;

  constructor(
    private s: Scene,
    private cam: Camera,
    private root: SVGSVGElement,
    /** Token positions of the selection (a node's; an edge's source and target). */
    private selectedPositions: () => number[],
  ) {
    this.gY.append(this.yBg);
    this.gX.append(this.xBg);
  }

  resize(w: number, h: number): void {
    this.yBg.setAttribute("height", String(h));
    this.xBg.setAttribute("width", String(w));
    this.gX.setAttribute("transform", `translate(0,${h - AXIS_X_H})`);
  }

  queue(): void {
    if (this.queued) return;
    this.queued = true;
    // for tests: the axes follow the view in the next frame ([data-axes=drawn]; no CSS reads it)
    this.root.setAttribute("data-axes", "pending");
    requestAnimationFrame(() => {
      this.queued = false;
      this.draw();
      this.root.setAttribute("data-axes", "drawn");
    });
  }

  draw(): void {
    const L = this.s.layout;
    const t = this.cam.t;
    const w = this.cam.w;
    let n = 0;
    if (L) {
      // the columns whose centre is on screen
      const x0 = t.invertX(AXIS_Y_W);
      const x1 = t.invertX(w);
      let lo = 0;
      let hi = L.colX.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (L.colX[mid] < x0) lo = mid + 1;
        else hi = mid;
      }
      const cols: ColumnSpot[] = [];
      for (let i = lo; i < L.colX.length && L.colX[i] <= x1; i++) cols.push({ pos: i, x: t.applyX(L.colX[i]), w: L.colW[i] * t.k });
      const sel = this.selectedPositions();
      const first = [...this.s.targets, ...sel];
      const labels = planTokenLabels(cols, this.s.tokens, first, this.s.routeColumns(), AXIS_X_H - 8);
      const selSet = new Set(sel);
      for (const l of labels) this.setXLabel(this.xLabel(n++), l.pos, l.x, l.compact, l.upright, l.text, selSet.has(l.pos));
    }
    for (let i = n; i < this.xLabels.length; i++) this.xLabels[i].setAttribute("display", "none");
    // layer axis
    let m = 0;
    if (L) {
      const rows: { y: number; text: string }[] = [{ y: t.applyY(levelY(L, 0)), text: layerName(-1) }];
      for (let l = L.nLayers - 1; l >= 0; l--) rows.push({ y: t.applyY(levelY(L, levelOf("block", l, L.parallel))), text: layerName(l) });
      const inView = rows.filter((r) => r.y >= 6 && r.y <= this.cam.h - AXIS_X_H - 4);
      for (const r of planLayerLabels(inView, 13)) {
        const el = this.yLabel(m++);
        el.setAttribute("y", r.y.toFixed(1));
        el.textContent = r.text;
        el.removeAttribute("display");
      }
    }
    for (let i = m; i < this.yLabels.length; i++) this.yLabels[i].setAttribute("display", "none");
  }

  private setXLabel(g: SVGGElement, pos: number, x: number, compact: boolean, upright: boolean, text: string, selected: boolean): void {
    const tok = this.s.tokens[pos] ?? "";
    g.setAttribute("transform", `translate(${x.toFixed(1)},0)`);
    g.setAttribute("data-pos", String(pos));
    g.setAttribute("data-token", tok);
    g.removeAttribute("display");
    g.classList.toggle("is-target", this.s.targetCols[pos] === 1);
    g.classList.toggle("is-selected", selected);
    g.classList.toggle("compact", compact);
    const [posT, tokT, title] = g.children as unknown as [SVGTextElement, SVGTextElement, SVGTitleElement];
    if (compact) {
      if (upright) {
        posT.removeAttribute("display");
        posT.textContent = String(pos);
      } else posT.setAttribute("display", "none");
      tokT.setAttribute("transform", `translate(0,${upright ? 4 + UPRIGHT_POS : 4}) rotate(-90)`);
      tokT.setAttribute("y", "0");
      tokT.setAttribute("text-anchor", "end");
      tokT.setAttribute("dominant-baseline", "central");
      tokT.setAttribute("font-size", String(SMALL_SIZE));
    } else {
      posT.removeAttribute("display");
      posT.textContent = String(pos);
      tokT.removeAttribute("transform");
      tokT.setAttribute("y", "29");
      tokT.setAttribute("text-anchor", "middle");
      tokT.removeAttribute("dominant-baseline");
      tokT.setAttribute("font-size", String(TOK_SIZE));
    }
    tokT.textContent = text;
    const pred = this.s.predictions[pos]?.[0];
    title.textContent =
      `position ${pos}: ${JSON.stringify(tok)}${bytesNote(this.s.p?.graph.token_bytes?.[pos])}` +
      (pred ? `\nnext: ${JSON.stringify(pred.token)} ${pct(pred.prob)}${bytesNote(pred.bytes)}` : "") +
      "\nclick: route to this position";
  }

  private xLabel(i: number): SVGGElement {
    if (!this.xLabels[i]) {
      const g = svg("g", { class: "xlabel" });
      g.append(
        svg("text", { class: "xl-pos", y: 13, "text-anchor": "middle", "font-size": POS_SIZE, "font-family": SANS }),
        svg("text", { class: "xl-tok", y: 29, "text-anchor": "middle", "font-size": TOK_SIZE, "font-family": MONO }),
        svg("title"),
      );
      this.gX.append(g);
      this.xLabels[i] = g;
    }
    return this.xLabels[i];
  }

  private yLabel(i: number): SVGTextElement {
    if (!this.yLabels[i]) {
      const el = svg("text", { class: "ylabel", x: AXIS_Y_W - 7, "text-anchor": "end", "dominant-baseline": "middle" });
      this.gY.append(el);
      this.yLabels[i] = el;
    }
    return this.yLabels[i];
  }
}
