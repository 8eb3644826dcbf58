// The "Direct logit attribution" view (inspector): a layers x heads heatmap of every head's signed
// write toward the prediction at the target (minus the foil's logit, when a foil is picked), an
// FFN column (and an attention-bias column when a layer has one), diverging colours centred on 0;
// the embedding and the constant beside it, and the sum checked against the logit difference.
// A head cell opens that head's panel on the route's strongest edge of that head into the
// target; an FFN cell opens the FFN's panel.

import type { App } from "../app/app";
import { select } from "../app/selection";
import { layerName } from "../layers";
import { errorBox, loadingBox, panelShell, section } from "../panels/common";
import { attnTargetId } from "../panels/context";
import { $view, setView } from "../state";
import type { Selection } from "../types";
import { h } from "../ui/dom";
import { type WhyCtx, signed, towardText } from "./panels";
import type { Attribution } from "./types";

/** Blue for a push toward the token, orange against it (the panels' promoted / suppressed colours). */
function colour(v: number, max: number): string {
  const a = Math.min(1, Math.abs(v) / max);
  return v >= 0 ? `rgba(0,114,178,${a.toFixed(3)})` : `rgba(213,94,0,${a.toFixed(3)})`;
}

export function dlaPanel(app: App, why: WhyCtx): HTMLElement {
  const tr = app.trace!;
  const { root, body } = panelShell("dla-panel", `Direct logit attribution · pos ${why.pos}`, ["Which heads write the prediction"], () => app.inspector.render());
  body.append(loadingBox("Loading the direct logit attribution…"));
  why
    .attribution()
    ?.then((a) => body.replaceChildren(...content(app, why, a, tr.n_heads)))
    .catch((err: Error) => body.replaceChildren(errorBox(err.message)));
  return root;
}

function content(app: App, why: WhyCtx, a: Attribution, nHeads: number): HTMLElement[] {
  const withBias = a.layers.some((l) => l.attn_bias !== 0);
  const cells = a.layers.flatMap((l) => [...l.heads, l.ffn, ...(withBias ? [l.attn_bias] : [])]);
  const max = Math.max(1e-9, ...cells.map(Math.abs));
  const cols = nHeads + 1 + (withBias ? 1 : 0);
  const cell = (layer: number, head: number | "ffn" | "bias", v: number) =>
    h(
      "div",
      {
        class: "dla-cell" + (typeof head === "number" ? "" : ` dla-${head}`),
        "data-layer": layer,
        "data-head": head,
        "data-kind": typeof head === "number" ? "head" : head,
        "data-value": v,
        style: `background:${colour(v, max)}`,
        title: `${layerName(layer)} ${typeof head === "number" ? `head ${head}` : head === "ffn" ? "FFN" : "attention bias"}: ${signed(v, 4)} logits` + (head === "bias" ? "" : "\nclick: open its panel"),
        onclick: head === "bias" ? undefined : () => (head === "ffn" ? openFfn(app, layer, why.pos) : openHead(app, layer, head, why.pos)),
      },
      Math.abs(v) >= max * 0.5 ? signed(v, 1) : "",
    );
  // layers as in the graph: the last one on top
  const rows = a.layers
    .slice()
    .reverse()
    .map((l) => [h("div", { class: "dla-rowhead" }, layerName(l.layer)), ...l.heads.map((v, i) => cell(l.layer, i, v)), cell(l.layer, "ffn", l.ffn), withBias ? cell(l.layer, "bias", l.attn_bias) : null]);
  const colHeads = [h("div"), ...Array.from({ length: nHeads }, (_, i) => h("div", { class: "dla-colhead" }, `h${i}`)), h("div", { class: "dla-colhead" }, "FFN"), withBias ? h("div", { class: "dla-colhead" }, "bias") : null];
  const grid = h(
    "div",
    {
      class: "dla-grid",
      "data-testid": "dla-heatmap",
      "data-embed": a.embed,
      "data-constant": a.constant,
      "data-total": a.total,
      "data-logit-diff": a.logit_diff,
      style: `grid-template-columns: 34px repeat(${cols}, minmax(14px, 1fr))`,
    },
    colHeads,
    rows,
  );
  const top = a.layers
    .flatMap((l) => [...l.heads.map((v, i) => ({ l: l.layer, what: `head ${i}`, head: i as number | null, v })), { l: l.layer, what: "FFN", head: null, v: l.ffn }])
    .sort((x, y) => Math.abs(y.v) - Math.abs(x.v))
    .slice(0, 8);
  return [
    h(
      "div",
      { class: "panel-meta small" },
      h("b", null, `${signed(a.logit_diff)} logits`),
      h("span", null, " · ", a.foil !== null ? "the logit difference, " : "the logit, ", ...towardText(why), ` at position ${a.pos}.`),
      h("div", { class: "muted" }, `The cells sum with the embedding (${signed(a.embed)}) and the constant (${signed(a.constant)}: final-norm and unembedding bias) to ${signed(a.total)}. Blue pushes toward the token, orange against it.`),
    ),
    section("Heads and FFNs by layer", grid, h("div", { class: "muted small note" }, "Click a head to open its panel (on the route's edge into the target that this head carries most), an FFN to see its neurons.")),
    section(
      "Largest writes",
      h(
        "ol",
        { class: "dla-top" },
        top.map((x) =>
          h(
            "li",
            { onclick: () => (x.head === null ? openFfn(app, x.l, why.pos) : openHead(app, x.l, x.head, why.pos)), tabindex: 0 },
            h("span", null, `${layerName(x.l)} ${x.what}`),
            h("span", { class: "dla-num " + (x.v >= 0 ? "pos" : "neg") }, signed(x.v)),
          ),
        ),
      ),
    ),
  ];
}

/** Open the head panel of `head` of block `layer`: the drawn route's attention edge into the
 * target that this head carries most, else the target's edge to itself. */
export function openHead(app: App, layer: number, head: number, pos: number): void {
  const into = attnTargetId(layer, pos, !!app.trace?.parallel);
  let source = `x:${layer}:${pos}`;
  let best = -1;
  for (const e of app.prepared?.graph.edges ?? []) {
    if (e.kind !== "attn" || e.target !== into) continue;
    const w = e.heads?.[String(head)] ?? 0;
    if (w > best) {
      best = w;
      source = e.source;
    }
  }
  const sel: Selection = { type: "edge", key: `attn|${source}|${into}` };
  setView({ sel, head, neuron: null });
  app.view.setSelection(sel);
  app.inspector.render();
}

function openFfn(app: App, layer: number, pos: number): void {
  if ($view.get().sel?.type === "node" && ($view.get().sel as { id: string }).id === `f:${layer}:${pos}`) return app.inspector.render();
  select(app, { type: "node", id: `f:${layer}:${pos}` });
}
