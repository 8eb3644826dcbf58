// Direct logit attribution in the inspector's panels: the head panel's DLA of a head beside its
// importance, and the FFN panel's block DLA with its neurons by |DLA| (/ffn with the contrast).
// DLA is read at the target position: a head's or an FFN's write there, toward the top token's
// logit (minus the foil's, when a foil is picked), signed, in logits (docs/contrastive.md).

import { errorBox, loadingBox, section } from "../panels/common";
import { h, num, tokenSpan } from "../ui/dom";
import type { Attribution, NeuronDla } from "./types";

/** What the panels need to show DLA (null in PanelCtx: no live single target). */
export interface WhyCtx {
  pos: number;
  foil: number | null;
  token: string | null;
  foilToken: string | null;
  topId: number | null;
  attribution(): Promise<Attribution> | null;
}

/** A logit value, signed: "+1.234". */
export function signed(x: number, digits = 3): string {
  return (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(digits);
}

/** "toward ' Mary' − ' John'" (or the top token's own logit), tokens as the app shows them. */
export function towardText(why: WhyCtx): (Node | string)[] {
  const out: (Node | string)[] = ["toward the logit of ", tokenSpan(why.token ?? "?", "tok pred")];
  if (why.foil !== null) out.push(" minus the logit of ", tokenSpan(why.foilToken ?? `id ${why.foil}`, "tok foil"));
  return out;
}

/** A head's DLA at the target (head -1: every head and the attention bias of the layer). */
export function headDlaValue(a: Attribution, layer: number, head: number): number | null {
  const l = a.layers[layer];
  if (!l) return null;
  if (head === -1) return l.heads.reduce((s, x) => s + x, 0) + l.attn_bias;
  return l.heads[head] ?? null;
}

/** The DLA of `head` of block `layer` in words, loaded when the attribution is here. */
export function headDla(why: WhyCtx | null | undefined, layer: number, head: number, edgeTarget: number): HTMLElement | null {
  if (!why) return null;
  const p = why.attribution();
  if (!p) return null;
  const el = h("div", { class: "dla-line", "data-testid": "head-dla", "data-layer": layer, "data-head": head }, loadingBox("Direct logit attribution…"));
  p.then((a) => {
    const v = headDlaValue(a, layer, head);
    if (v === null) return el.replaceChildren(errorBox(`No attribution for block ${layer}.`));
    el.dataset.value = String(v);
    const who = head === -1 ? "All heads of this layer (and its attention bias)" : `Head ${head}`;
    el.replaceChildren(
      h("b", { class: "dla-value " + (v >= 0 ? "pos" : "neg") }, `${signed(v)} logits`),
      h("span", null, ` · direct logit attribution: ${who} writes this at the target position ${why.pos}, `, ...towardText(why), "."),
      edgeTarget !== why.pos ? h("span", { class: "muted" }, ` This edge goes into position ${edgeTarget}: the head's importance above is there, its direct attribution only at the target.`) : "",
    );
  }).catch((err: Error) => el.replaceChildren(errorBox(`Direct logit attribution: ${err.message}`)));
  return el;
}

/** A small signed cell for a head row ("beside its importance"). */
export function dlaCell(a: Attribution | null, layer: number, head: number): HTMLElement | null {
  if (!a) return null;
  const v = headDlaValue(a, layer, head);
  if (v === null) return null;
  return h("span", { class: "head-dla-cell " + (v >= 0 ? "pos" : "neg"), "data-dla": v, title: `direct logit attribution at the target: ${v} logits` }, signed(v, 2));
}

/** The /ffn parameters that add neurons by |DLA| (only for the FFN at the target position). */
export function ffnContrast(why: WhyCtx | null | undefined, pos: number): { foil_id?: number; token_id?: number } {
  if (!why || pos !== why.pos) return {};
  if (why.foil !== null) return { foil_id: why.foil };
  return why.topId !== null ? { token_id: why.topId } : {};
}

/** The FFN panel's section: the block's DLA and its neurons by |DLA| (from /ffn's `attribution`). */
export function ffnDla(why: WhyCtx | null | undefined, layer: number, pos: number, list: NeuronDla[] | undefined): HTMLElement | null {
  if (!why) return null;
  if (pos !== why.pos) return h("div", { class: "muted small note" }, `Direct logit attribution is read at the target position (${why.pos}); this FFN is at position ${pos}.`);
  const block = h("div", { class: "dla-line", "data-testid": "ffn-dla", "data-layer": layer }, loadingBox("Direct logit attribution…"));
  why
    .attribution()
    ?.then((a) => {
      const v = a.layers[layer]?.ffn;
      if (v === undefined) return block.replaceChildren(errorBox(`No attribution for block ${layer}.`));
      block.dataset.value = String(v);
      block.replaceChildren(h("b", { class: "dla-value " + (v >= 0 ? "pos" : "neg") }, `${signed(v)} logits`), h("span", null, " · direct logit attribution of this FFN's whole write, ", ...towardText(why), "."));
    })
    .catch((err: Error) => block.replaceChildren(errorBox(`Direct logit attribution: ${err.message}`)));
  const max = Math.max(1e-9, ...(list ?? []).map((n) => Math.abs(n.dla)));
  const rows = (list ?? []).map((n) =>
    h(
      "li",
      { class: "dla-neuron", "data-testid": "ffn-dla-neuron", "data-neuron": n.index, "data-dla": n.dla, title: `neuron ${n.neuron}: DLA ${n.dla}, activation ${n.activation}, importance ${n.importance}` },
      h("span", { class: "n-name" }, `#${n.neuron}`),
      h("span", { class: "dla-bar" }, h("span", { class: n.dla >= 0 ? "pos" : "neg", style: `width:${Math.max(1, (Math.abs(n.dla) / max) * 50).toFixed(1)}%` })),
      h("span", { class: "dla-num " + (n.dla >= 0 ? "pos" : "neg") }, signed(n.dla, 3)),
      h("span", { class: "muted" }, `act ${num(n.activation, 2)} · imp ${num(n.importance, 3)}`),
    ),
  );
  return section(
    "Direct logit attribution",
    block,
    list?.length ? h("div", { class: "muted small note" }, "Neurons by |direct logit attribution| (signed: activation × output column, read through the final norm):") : null,
    list?.length ? h("ol", { class: "dla-neurons" }, rows) : null,
  );
}
