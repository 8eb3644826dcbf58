// Pieces shared by the inspector panels.

import type { Effect, Effects } from "../types";
import { bytesNote, h, num, tokenSpan } from "../ui/dom";
import type { PanelCtx } from "./context";

export const POS = "#0072B2"; // promoted / positive activation
export const NEG = "#D55E00"; // suppressed / negative activation

/** The prompt's token at `pos` as a span, its bytes on hover (from the graph's `token_bytes`). */
export function posToken(ctx: PanelCtx, pos: number): HTMLSpanElement {
  return tokenSpan(ctx.tokens[pos] ?? "?", "tok", false, ctx.graph()?.p.graph.token_bytes?.[pos]);
}

/** A panel: kicker (what and where, layers named as layers.ts does), title, close button; `layer`
 * is the block index (-1: the embedding), as the graph node hooks' data-layer. */
export function panelShell(testid: string, kicker: string, title: (Node | string)[], onClose: () => void, layer?: number): { root: HTMLElement; body: HTMLElement } {
  // "Block output · L22 out": the place is shown as layers.ts writes it (not upper-cased)
  const cut = kicker.indexOf(" · ");
  const what = cut < 0 ? kicker : kicker.slice(0, cut);
  const place = cut < 0 ? null : kicker.slice(cut + 3);
  const body = h("div", { class: "panel-body" });
  const root = h(
    "section",
    { class: "panel", "data-testid": testid, "data-layer": layer },
    h(
      "header",
      { class: "panel-head" },
      h("div", { class: "panel-kicker" }, what, place ? [" · ", h("span", { class: "panel-place" }, place)] : null),
      h("h2", { class: "panel-title" }, ...title),
      h("button", { class: "icon-btn panel-close", title: "Close (Esc)", "aria-label": "close panel", onclick: onClose }, "×"),
    ),
    body,
  );
  return { root, body };
}

export function section(title: string, ...children: (Node | string | null)[]): HTMLElement {
  return h("div", { class: "psection" }, h("h3", null, title), ...children);
}

export function loadingBox(text = "Loading…"): HTMLElement {
  return h("div", { class: "loading" }, h("span", { class: "spinner" }), text);
}

export function errorBox(message: string): HTMLElement {
  return h("div", { class: "inline-error" }, message);
}

function effectRows(list: Effect[], sign: 1 | -1, max: number): HTMLElement {
  if (!list.length) return h("div", { class: "muted small" }, "none");
  return h(
    "ol",
    { class: "effects" },
    list.map((e) =>
      h(
        "li",
        { title: `${JSON.stringify(e.token)} (id ${e.id}${bytesNote(e.bytes)}): ${sign > 0 ? "+" : ""}${e.effect}`, "data-effect": e.effect },
        tokenSpan(e.token, "tok", true, e.bytes),
        h("span", { class: "ebar", style: `width:${Math.max(2, (Math.abs(e.effect) / max) * 100).toFixed(1)}%;background:${sign > 0 ? POS : NEG}` }),
        h("span", { class: "evalue" }, (e.effect > 0 ? "+" : "") + num(e.effect, 2)),
      ),
    ),
  );
}

/** Promoted and suppressed tokens side by side, bars on one scale. */
export function effectsView(eff: Effects, note?: string): HTMLElement {
  const max = Math.max(1e-9, ...eff.promoted.map((e) => Math.abs(e.effect)), ...eff.suppressed.map((e) => Math.abs(e.effect)));
  return h(
    "div",
    null,
    note ? h("div", { class: "muted small note" }, note) : null,
    h(
      "div",
      { class: "effects-grid" },
      h("div", null, h("div", { class: "col-head", style: `color:${POS}` }, "▲ Promoted"), effectRows(eff.promoted, 1, max)),
      h("div", null, h("div", { class: "col-head", style: `color:${NEG}` }, "▼ Suppressed"), effectRows(eff.suppressed, -1, max)),
    ),
  );
}
