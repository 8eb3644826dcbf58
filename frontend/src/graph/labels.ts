// The label rule of the token and layer axes, shared by the live axes (screen pixels, axes.ts)
// and the SVG export (graph units, svgexport.ts):
// - a token column wide enough shows its position over its token (truncated to the column);
// - a narrower one shows its token rotated -90 degrees in a small font (its position is in the
//   label's <title>);
// - a wide column the zoom has narrowed so far that its token would keep fewer characters across
//   than rotated shows its position over the token rotated ("upright"): at about 40 tokens a
//   route column of ~30 px reads "the" rather than "t…" (the export draws at scale 1, where a
//   route column is at least 46 units: it never meets this case);
// - only where columns are too narrow for even that are labels thinned: the target(s) and the
//   selection's positions are placed first, then the columns the route touches, then the rest,
//   each only where its box overlaps no placed one. Boxes never overlap.
// Text widths are measured (canvas measureText with the labels' own fonts), not guessed.

import { tokenText } from "../ui/dom";

export const SANS = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
export const MONO = "ui-monospace, SFMono-Regular, 'SF Mono', Menlo, Consolas, 'Liberation Mono', monospace";
export const POS_SIZE = 9; // the position over a wide label
export const TOK_SIZE = 11; // the token of a wide label
export const SMALL_SIZE = 9; // the rotated token of a compact label
const WIDE_MIN = 28; // a column this wide (px) gets the wide label
const COMPACT_W = SMALL_SIZE + 3; // the box across a rotated label
const MAX_CHARS = 14;
/** Room (px) an upright label's position takes above its rotated token. */
export const UPRIGHT_POS = 13;

/** Characters of the token a cut label still shows (the ellipsis not counted). */
function shown(text: string): number {
  const n = Array.from(text).length;
  return text.endsWith("…") ? n - 1 : n;
}

let measureCtx: CanvasRenderingContext2D | null = null;
const widths = new Map<string, number>();

/** The width of `text` in `size` px of `family` (cached); `weight`: a CSS font weight. */
export function textWidth(text: string, size: number, family: string, weight = ""): number {
  const key = `${weight}|${size}|${family}|${text}`;
  let w = widths.get(key);
  if (w === undefined) {
    measureCtx ??= document.createElement("canvas").getContext("2d");
    if (measureCtx) {
      measureCtx.font = `${weight} ${size}px ${family}`.trim();
      w = measureCtx.measureText(text).width;
    } else w = Array.from(text).length * size * 0.62;
    if (widths.size > 20000) widths.clear();
    widths.set(key, w);
  }
  return w;
}

/** `text` cut (with an ellipsis) to at most `maxW` px and `maxChars` characters; "" when not even
 * one character and the ellipsis fit. */
export function fitText(text: string, size: number, family: string, maxW: number, maxChars = Infinity, weight = ""): string {
  const chars = Array.from(text);
  if (chars.length <= maxChars && textWidth(text, size, family, weight) <= maxW) return text;
  let n = Math.min(chars.length, maxChars) - 1;
  while (n >= 1) {
    const t = chars.slice(0, n).join("") + "…";
    if (textWidth(t, size, family, weight) <= maxW) return t;
    n--;
  }
  return "";
}

export interface ColumnSpot {
  pos: number;
  x: number; // centre
  w: number; // width (the same units as x)
}

export interface TokenLabel {
  pos: number;
  x: number;
  compact: boolean; // rotated token (under the position when `upright`)
  upright: boolean; // the position over the rotated token
  text: string;
  lo: number; // box, along x
  hi: number;
}

/** Labels for the columns `cols` (ascending by x). `first`: positions placed before any other
 * (targets, the selection); `used`: columns the route touches (placed before the rest);
 * `compactLen`: the room (px) along a rotated label. */
export function planTokenLabels(cols: ColumnSpot[], tokens: string[], first: number[], used: Uint8Array | null, compactLen: number): TokenLabel[] {
  const label = (c: ColumnSpot): TokenLabel => {
    const full = tokenText(tokens[c.pos] ?? "");
    if (c.w >= WIDE_MIN) {
      const text = fitText(full, TOK_SIZE, MONO, c.w - 8, MAX_CHARS);
      const posW = textWidth(String(c.pos), POS_SIZE, SANS);
      if (text !== full) {
        const up = fitText(full, SMALL_SIZE, MONO, compactLen - UPRIGHT_POS, MAX_CHARS);
        if (shown(up) > shown(text) && posW + 4 <= c.w) {
          const half = Math.max(COMPACT_W, posW + 4) / 2;
          return { pos: c.pos, x: c.x, compact: true, upright: true, text: up, lo: c.x - half, hi: c.x + half };
        }
      }
      const half = (Math.max(textWidth(text, TOK_SIZE, MONO), posW) + 4) / 2;
      return { pos: c.pos, x: c.x, compact: false, upright: false, text, lo: c.x - half, hi: c.x + half };
    }
    const text = fitText(full, SMALL_SIZE, MONO, compactLen, MAX_CHARS) || "…";
    return { pos: c.pos, x: c.x, compact: true, upright: false, text, lo: c.x - COMPACT_W / 2, hi: c.x + COMPACT_W / 2 };
  };
  const byPos = new Map<number, ColumnSpot>();
  for (const c of cols) byPos.set(c.pos, c);
  // placed boxes, sorted by lo (boxes never overlap, so by hi too)
  const placed: TokenLabel[] = [];
  const done = new Set<number>();
  const slot = (lo: number) => {
    let a = 0;
    let b = placed.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (placed[m].lo < lo) a = m + 1;
      else b = m;
    }
    return a;
  };
  const free = (lo: number, hi: number) => {
    const j = slot(lo);
    return !(placed[j - 1] && placed[j - 1].hi > lo) && !(placed[j] && placed[j].lo < hi);
  };
  const put = (l: TokenLabel) => {
    placed.splice(slot(l.lo), 0, l);
    done.add(l.pos);
  };
  const tryPlace = (c: ColumnSpot, force: boolean) => {
    if (done.has(c.pos)) return;
    const l = label(c);
    if (free(l.lo, l.hi)) return put(l);
    if (!force) return;
    // a target or the selection next to another: slide it beside the ones in the way (at most
    // two boxes' widths), so that none of them is dropped
    const w = l.hi - l.lo;
    let best = Infinity;
    for (const b of placed) {
      if (b.hi < l.lo - 2 * w || b.lo > l.hi + 2 * w) continue;
      for (const lo of [b.hi, b.lo - w]) if (Math.abs(lo - l.lo) < Math.abs(best) && free(lo, lo + w)) best = lo - l.lo;
    }
    if (Math.abs(best) <= 2 * w) put({ ...l, x: l.x + best, lo: l.lo + best, hi: l.hi + best });
  };
  for (const pos of first) {
    const c = byPos.get(pos);
    if (c) tryPlace(c, true);
  }
  if (used) for (const c of cols) if (used[c.pos]) tryPlace(c, false);
  for (const c of cols) tryPlace(c, false);
  return placed;
}

/** Layer labels: "emb" first, then L<n-1> down to L0, each kept only `gap` px or more from every
 * kept one. `ys(level)`: where a row is (same units as gap). */
export function planLayerLabels(rows: { y: number; text: string }[], gap: number): { y: number; text: string }[] {
  const kept: { y: number; text: string }[] = [];
  for (const r of rows) if (kept.every((k) => Math.abs(k.y - r.y) >= gap)) kept.push(r);
  return kept;
}
