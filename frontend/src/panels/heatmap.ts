// A T x T heatmap on canvas (query positions as rows, key positions as columns): one pixel
// per cell in an offscreen image scaled up without smoothing, so 500 tokens cost the same as 5.
// Causal mask greyed, the selected cell and its row marked, hover shows the numbers.

import { h, tokenText, truncate, num, clamp } from "../ui/dom";

type RGB = [number, number, number];

const BLUES: RGB[] = [
  [247, 251, 255],
  [222, 235, 247],
  [198, 219, 239],
  [158, 202, 225],
  [107, 174, 214],
  [66, 146, 198],
  [33, 113, 181],
  [8, 81, 156],
  [8, 48, 107],
];
const ORANGES: RGB[] = [
  [255, 245, 235],
  [254, 230, 206],
  [253, 208, 162],
  [253, 174, 107],
  [253, 141, 60],
  [241, 105, 19],
  [217, 72, 1],
  [166, 54, 3],
  [127, 39, 4],
];
const RDBU: RGB[] = [
  [178, 24, 43],
  [214, 96, 77],
  [244, 165, 130],
  [253, 219, 199],
  [247, 247, 247],
  [209, 229, 240],
  [146, 197, 222],
  [67, 147, 195],
  [33, 102, 172],
];

function interp(stops: RGB[], t: number): RGB {
  const x = clamp(t, 0, 1) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i];
  const b = stops[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

export type Scale = "blues" | "oranges" | "diverging";

export interface HeatmapOptions {
  title: string;
  caption?: string;
  matrix: number[][];
  tokens: string[];
  hook?: string;
  scale: Scale;
  mark?: { row: number; col: number } | null;
  size?: number;
  onCellClick?: (row: number, col: number) => void;
}

export function heatmap(o: HeatmapOptions): HTMLElement {
  const T = o.matrix.length;
  const size = o.size ?? 340;
  let gamma = false;
  const readout = h("div", { class: "hm-readout muted small" }, "hover a cell");
  const canvas = h("canvas", { class: "hm-canvas" });
  const legend = h("canvas", { class: "hm-legend", width: 160, height: 10 });
  const legendText = h("div", { class: "hm-legend-text muted small" });
  let max = 0;
  let min = 0;
  for (const row of o.matrix)
    for (const v of row) {
      if (v > max) max = v;
      if (v < min) min = v;
    }
  const diverging = o.scale === "diverging" || min < 0;
  const stops = diverging ? RDBU : o.scale === "oranges" ? ORANGES : BLUES;
  const range = diverging ? Math.max(Math.abs(min), Math.abs(max)) || 1 : max || 1;
  const colour = (v: number): RGB => {
    if (diverging) {
      const s = v / range;
      const g = gamma ? Math.sign(s) * Math.sqrt(Math.abs(s)) : s;
      return interp(stops, (g + 1) / 2);
    }
    const s = v / range;
    return interp(stops, gamma ? Math.sqrt(Math.max(0, s)) : s);
  };

  const labels = size / Math.max(1, T) >= 11;
  const pad = labels ? 64 : 0;
  const cell = Math.min(26, (size - pad) / Math.max(1, T));
  const side = Math.round(cell * T);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round((side + pad) * dpr);
  canvas.height = Math.round((side + pad) * dpr);
  canvas.style.width = `${side + pad}px`;
  canvas.style.height = `${side + pad}px`;

  const img = document.createElement("canvas");
  img.width = Math.max(1, T);
  img.height = Math.max(1, T);

  const paint = () => {
    const ictx = img.getContext("2d")!;
    const data = ictx.createImageData(Math.max(1, T), Math.max(1, T));
    for (let i = 0; i < T; i++) {
      const row = o.matrix[i];
      for (let j = 0; j < T; j++) {
        const k = (i * T + j) * 4;
        let c: RGB;
        if (j > i) c = [226, 230, 235];
        else c = colour(row[j] ?? 0);
        data.data[k] = c[0];
        data.data[k + 1] = c[1];
        data.data[k + 2] = c[2];
        data.data[k + 3] = 255;
      }
    }
    ictx.putImageData(data, 0, 0);
    const ctx = canvas.getContext("2d")!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, side + pad, side + pad);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, pad, 0, side, side);
    if (labels) {
      ctx.fillStyle = "#52606D";
      ctx.font = "10px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let i = 0; i < T; i++) ctx.fillText(truncate(tokenText(o.tokens[i] ?? ""), 9), pad - 4, (i + 0.5) * cell);
      ctx.save();
      for (let j = 0; j < T; j++) {
        ctx.save();
        ctx.translate(pad + (j + 0.5) * cell, side + 4);
        ctx.rotate(-Math.PI / 3);
        ctx.textAlign = "right";
        ctx.fillText(truncate(tokenText(o.tokens[j] ?? ""), 9), 0, 0);
        ctx.restore();
      }
      ctx.restore();
    }
    if (o.mark) {
      const { row, col } = o.mark;
      ctx.strokeStyle = "rgba(230,159,0,0.85)";
      ctx.lineWidth = 1;
      ctx.strokeRect(pad + 0.5, row * cell + 0.5, side - 1, Math.max(1, cell) - 0.5);
      ctx.strokeStyle = "#E69F00";
      ctx.lineWidth = 2;
      const m = Math.max(cell, 5);
      ctx.strokeRect(pad + col * cell + cell / 2 - m / 2, row * cell + cell / 2 - m / 2, m, m);
    }
    const lctx = legend.getContext("2d")!;
    for (let x = 0; x < 160; x++) {
      const v = diverging ? ((x / 159) * 2 - 1) * range : (x / 159) * range;
      const c = colour(v);
      lctx.fillStyle = `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`;
      lctx.fillRect(x, 0, 1, 10);
    }
    legendText.textContent = diverging ? `${num(-range)} … 0 … ${num(range)}` : `0 … ${num(range)}${gamma ? " (√ scale)" : ""}`;
  };

  const at = (ev: MouseEvent): [number, number] | null => {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left - pad;
    const y = ev.clientY - r.top;
    if (x < 0 || y < 0 || x >= side || y >= side) return null;
    return [Math.floor(y / cell), Math.floor(x / cell)];
  };
  canvas.addEventListener("mousemove", (ev) => {
    const c = at(ev);
    if (!c) return;
    const [i, j] = c;
    const v = j > i ? null : o.matrix[i]?.[j];
    readout.textContent = `query ‘${truncate(tokenText(o.tokens[i] ?? ""), 16)}’ (${i}) ← key ‘${truncate(tokenText(o.tokens[j] ?? ""), 16)}’ (${j}): ${v === null || v === undefined ? "masked" : num(v, 4)}`;
  });
  canvas.addEventListener("mouseleave", () => (readout.textContent = "hover a cell"));
  if (o.onCellClick) {
    canvas.style.cursor = "pointer";
    canvas.addEventListener("click", (ev) => {
      const c = at(ev);
      if (c && c[1] <= c[0]) o.onCellClick!(c[0], c[1]);
    });
  }
  const gammaBox = h("input", { type: "checkbox" });
  gammaBox.addEventListener("change", () => {
    gamma = gammaBox.checked;
    paint();
  });
  paint();
  return h(
    "figure",
    { class: "heatmap", "data-heatmap": o.hook ?? "heatmap" },
    h("figcaption", null, h("b", null, o.title), o.caption ? h("span", { class: "muted small" }, " · " + o.caption) : null),
    h("div", { class: "hm-scroll" }, canvas),
    h("div", { class: "hm-foot" }, legend, legendText, h("label", { class: "small muted", title: "square-root colour scale: makes small values visible" }, gammaBox, " √"), ),
    readout,
  );
}
