// The knockout check's figures (verify.ts): the target token's probability in the full run, with
// the route alone and with random knockouts of the same weight (each trial a dot, the mean a bar),
// on a log scale; and the curve over thresholds (route share and random mean share, log y).

import { h, svg, tokenText } from "../ui/dom";
import type { VerifyReport } from "./types";

const FLOOR = 1e-9; // a probability or share of 0 is drawn here, on the axis' floor

/** A share as words: "1.2%", "0.0002%", "0%". */
export function sharePct(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (x <= 0) return "0%";
  const p = x * 100;
  if (p >= 10) return `${p.toFixed(1)}%`;
  return `${p.toPrecision(2).replace(/\.?0+$/, "").replace(/\.?0+e/, "e")}%`;
}

/** Probability as the figure labels it. */
function probText(p: number): string {
  return p >= 0.01 ? p.toFixed(3) : p.toExponential(1);
}

function logScale(lo: number, hi: number, a: number, b: number): (v: number) => number {
  const l0 = Math.log10(lo);
  const l1 = Math.log10(hi);
  return (v) => a + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0)) * (b - a);
}

/** The floor and ceiling (powers of ten) of the values drawn on a log axis. */
function decades(values: number[]): [number, number] {
  const pos = values.filter((v) => v > 0 && Number.isFinite(v));
  const lo = Math.max(FLOOR, Math.min(...pos, 0.1));
  const hi = Math.max(...pos, 1e-3);
  return [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
}

function axisTicks(g: SVGGElement, lo: number, hi: number, at: (v: number) => number, horizontal: boolean, y0: number, x0: number): void {
  for (let e = Math.log10(lo); e <= Math.log10(hi) + 1e-9; e++) {
    const v = 10 ** e;
    const p = at(v);
    const label = svg("text", horizontal ? { x: p, y: y0 + 12, "text-anchor": "middle", class: "vf-tick" } : { x: x0 - 4, y: p + 3, "text-anchor": "end", class: "vf-tick" });
    label.textContent = e >= -2 ? String(+v.toPrecision(1)) : `1e${e}`;
    g.append(horizontal ? svg("line", { x1: p, x2: p, y1: 4, y2: y0, class: "vf-grid" }) : svg("line", { x1: x0, x2: x0 + 1000, y1: p, y2: p, class: "vf-grid" }), label);
  }
}

/** Three rows on one log-probability axis: full run, route alone, random knockouts. */
export function verifyFigure(r: VerifyReport): HTMLElement {
  const W = 340;
  const L = 92;
  const R = W - 12;
  const rowY = [16, 38, 60];
  const axisY = 74;
  const [lo, hi] = decades([r.full.prob, r.route.prob, r.random_mean.prob, ...r.random.map((x) => x.prob)]);
  const x = logScale(lo, hi, L, R);
  const root = svg("svg", { width: W, height: axisY + 16, viewBox: `0 0 ${W} ${axisY + 16}`, class: "vf-svg", role: "img" });
  const grid = svg("g");
  axisTicks(grid, lo, hi, x, true, axisY, L);
  root.append(grid, svg("line", { x1: L, x2: R, y1: axisY, y2: axisY, class: "vf-axis" }));
  const rowLabel = (i: number, text: string) => {
    const t = svg("text", { x: L - 6, y: rowY[i] + 4, "text-anchor": "end", class: "vf-label" });
    t.textContent = text;
    root.append(t);
  };
  const bar = (i: number, p: number, cls: string, testid: string) => {
    const b = svg("rect", { x: L, y: rowY[i] - 6, width: Math.max(1, x(p) - L), height: 12, class: cls, "data-testid": testid, "data-value": p });
    const title = svg("title");
    title.textContent = `p = ${p}`;
    b.append(title);
    const inside = x(p) > R - 40; // no room after the bar: the value is written inside it
    const t = svg("text", { x: inside ? x(p) - 4 : x(p) + 4, y: rowY[i] + 4, class: "vf-val" + (inside ? " inside" : ""), "text-anchor": inside ? "end" : "start" });
    t.textContent = probText(p);
    root.append(b, t);
  };
  rowLabel(0, "full run");
  rowLabel(1, "route alone");
  rowLabel(2, "random (mean)");
  bar(0, r.full.prob, "vf-full", "verify-full");
  bar(1, r.route.prob, "vf-route", "verify-route");
  bar(2, r.random_mean.prob, "vf-random", "verify-random-mean");
  r.random.forEach((t, i) => {
    const dot = svg("circle", { cx: x(t.prob), cy: rowY[2], r: 3.2, class: "vf-trial", "data-testid": "verify-trial", "data-trial": i, "data-value": t.prob });
    const title = svg("title");
    title.textContent = `random trial ${i + 1}: p = ${t.prob} (removed weight ${t.removed_weight ?? "?"})`;
    dot.append(title);
    root.append(dot);
  });
  return h("div", { class: "vf-figure" }, root as unknown as HTMLElement);
}

/** The route's and the random knockouts' probability shares over thresholds (log y), `current` marked. */
export function curveChart(reports: VerifyReport[], current: number): HTMLElement {
  const W = 340;
  const H = 150;
  const L = 44;
  const R = W - 10;
  const T = 10;
  const B = H - 28;
  const share = (p: number, full: number) => (full > 0 ? p / full : NaN);
  const pts = reports.map((r) => ({ t: r.threshold, route: share(r.route.prob, r.full.prob), rand: share(r.random_mean.prob, r.full.prob), beats: r.beats_random }));
  const [lo, hi] = decades(pts.flatMap((p) => [p.route, p.rand]).concat([1]));
  const y = logScale(lo, Math.max(hi, 1), B, T);
  const ts = pts.map((p) => p.t);
  const tLo = Math.min(...ts, current);
  const tHi = Math.max(...ts, current);
  const x = logScale(tLo, tHi === tLo ? tLo * 2 : tHi, L, R);
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "vf-svg", "data-testid": "verify-curve-chart", role: "img" });
  const grid = svg("g");
  axisTicks(grid, lo, Math.max(hi, 1), y, false, 0, L);
  root.append(grid, svg("line", { x1: L, x2: R, y1: B, y2: B, class: "vf-axis" }));
  const line = (key: "route" | "rand", cls: string) =>
    svg("polyline", { points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p[key] > 0 ? p[key] : lo).toFixed(1)}`).join(" "), class: cls, fill: "none" });
  const mark = svg("line", { x1: x(current), x2: x(current), y1: T, y2: B, class: "vf-current", "data-current": current });
  root.append(mark, line("rand", "vf-line-random"), line("route", "vf-line-route"));
  for (const p of pts) {
    const g = svg("g", { class: "vf-point", "data-threshold": p.t, "data-route-share": p.route, "data-random-share": p.rand, "data-beats": String(p.beats) });
    const title = svg("title");
    title.textContent = `threshold ${p.t}: the route keeps ${sharePct(p.route)}, random edges ${sharePct(p.rand)}${p.beats ? " (beats random)" : " (does not beat random)"}`;
    g.append(title, svg("circle", { cx: x(p.t), cy: y(p.route > 0 ? p.route : lo), r: 3.5, class: "vf-route-dot" }), svg("circle", { cx: x(p.t), cy: y(p.rand > 0 ? p.rand : lo), r: 3, class: "vf-random-dot" }));
    const tick = svg("text", { x: x(p.t), y: B + 12, "text-anchor": "middle", class: "vf-tick" });
    tick.textContent = String(p.t);
    root.append(g, tick);
  }
  const xl = svg("text", { x: (L + R) / 2, y: H - 3, "text-anchor": "middle", class: "vf-label" });
  xl.textContent = "threshold";
  root.append(xl);
  return h(
    "div",
    { class: "vf-curve" },
    root as unknown as HTMLElement,
    h("div", { class: "vf-legend small" }, h("span", { class: "vf-key route" }, "route alone"), h("span", { class: "vf-key random" }, "random, same weight (mean)"), h("span", { class: "muted" }, "share of the full run's p; dashed: the current threshold")),
  );
}

/** "the route alone keeps 1.2% of p(' Paris'); random edges of the same weight keep 0.0002%". */
export function shareWords(r: VerifyReport): string {
  const full = r.full.prob;
  const tok = tokenText(r.target.token);
  return `the route alone keeps ${sharePct(full > 0 ? r.route.prob / full : NaN)} of p(‘${tok}’); random edges of the same weight keep ${sharePct(full > 0 ? r.random_mean.prob / full : NaN)}`;
}
