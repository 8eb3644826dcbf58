// Neuron panel (an FFN node was clicked): the FFN's top neurons by importance with their signed
// activation, each with the tokens its write promotes / suppresses; "All" is the FFN output.

import type { Effects, FfnInfo } from "../types";
import { qs } from "../api";
import { h, num, tokenText, truncate } from "../ui/dom";
import { NEG, POS, effectsView, errorBox, loadingBox, panelShell, posToken, section } from "./common";
import type { NodeRef, PanelCtx } from "./context";
import { layerName, nodePlace } from "../layers";
import { ffnContrast, ffnDla } from "../why/panels";
import type { NeuronDla } from "../why/types";

export function neuronPanel(ctx: PanelCtx, node: NodeRef): HTMLElement {
  const { root, body } = panelShell("neuron-panel", `FFN · ${nodePlace("ffn", node.layer)}`, [posToken(ctx, node.pos), h("span", { class: "muted" }, ` pos ${node.pos}`)], ctx.close, node.layer);
  const g = ctx.graph();
  let routeWeight: number | null = null;
  if (g) {
    const i = g.p.byId.get(node.id);
    if (i !== undefined) for (const e of g.p.outgoing[i]) routeWeight = g.p.edges[e].weight;
  }
  const list = h("div", null, loadingBox());
  const detail = h("div");
  const dlaSlot = h("div", { class: "dla-slot" }); // direct logit attribution at the target (why/panels.ts)
  body.append(
    h("div", { class: "panel-meta muted small" }, `node ${node.id}` + (routeWeight !== null ? ` · FFN importance in the block output ${num(routeWeight)}` : "")),
    dlaSlot,
    list,
    detail,
  );
  let k = 20;
  let data: FfnInfo | null = null;
  let current: number | null = ctx.neuron;

  const mini = (eff: Partial<Effects> | undefined) => {
    if (!eff) return null;
    const show = (arr: { token: string }[]) => arr.slice(0, 3).map((t) => truncate(tokenText(t.token), 10)).join(" ");
    return h(
      "div",
      { class: "mini-eff" },
      eff.promoted?.length ? h("span", { style: `color:${POS}` }, "▲ ", h("span", { class: "tok" }, show(eff.promoted))) : null,
      eff.suppressed?.length ? h("span", { style: `color:${NEG}` }, " ▼ ", h("span", { class: "tok" }, show(eff.suppressed))) : null,
    );
  };

  const drawList = () => {
    if (!data) return;
    const maxImp = Math.max(1e-9, ...data.neurons.map((n) => n.importance));
    const maxAct = Math.max(1e-9, ...data.neurons.map((n) => Math.abs(n.activation)));
    const rows = data.neurons.map((n) =>
      h(
        "li",
        { class: "neuron-row" + (current === n.index ? " active" : ""), "data-neuron": n.index, onclick: () => pick(n.index), tabindex: 0 },
        h("span", { class: "n-name" }, `#${n.neuron}`),
        h("span", { class: "hbar", title: `importance ${n.importance}` }, h("span", { style: `width:${Math.max(1, (n.importance / maxImp) * 100).toFixed(1)}%` })),
        h("span", { class: "n-imp" }, num(n.importance)),
        h(
          "span",
          { class: "n-act", title: `activation ${n.activation}`, "data-activation": n.activation },
          h("span", { class: "act-bar", style: `width:${Math.max(1, (Math.abs(n.activation) / maxAct) * 100).toFixed(1)}%;background:${n.activation >= 0 ? POS : NEG};${n.activation < 0 ? "margin-left:auto" : ""}` }),
          h("span", { class: "act-val", style: `color:${n.activation >= 0 ? POS : NEG}` }, (n.activation > 0 ? "+" : "") + num(n.activation, 2)),
        ),
        mini(n),
      ),
    );
    list.replaceChildren(
      section(
        "Top neurons by importance",
        h("div", { class: "neuron-legend muted small" }, "importance · activation (", h("span", { style: `color:${POS}` }, "positive"), " / ", h("span", { style: `color:${NEG}` }, "negative"), ")"),
        h(
          "ul",
          { class: "neuron-list" },
          h("li", { class: "neuron-row all" + (current === null ? " active" : ""), onclick: () => pick(null), tabindex: 0 }, h("span", { class: "n-name" }, "All"), h("span", { class: "muted small" }, "the whole FFN output"), mini(data.all)),
          rows,
        ),
        data.neurons.length >= k ? h("button", { class: "btn small", onclick: () => ((k = Math.min(200, k * 2.5)), load()) }, "Show more neurons") : null,
      ),
    );
  };

  const pick = (n: number | null) => {
    current = n;
    ctx.setNeuron(n);
    drawList();
    showDetail();
  };

  const showDetail = () => {
    if (!data) return;
    if (current === null) {
      detail.replaceChildren(section("Promoted / suppressed tokens: FFN output", effectsView(data.all, `Direct effect of ${layerName(node.layer)}'s whole FFN write at position ${node.pos} on the logit lens of the block output (${nodePlace("block", node.layer)}).`)));
      return;
    }
    const n = current;
    detail.replaceChildren(loadingBox(`Loading neuron ${n}…`));
    ctx
      .get<Effects>(`api/trace/${ctx.traceId}/neuron?${qs({ layer: node.layer, pos: node.pos, neuron: n, k: 10 })}`)
      .then((eff) => {
        if (current !== n) return;
        const info = data?.neurons.find((x) => x.index === n);
        detail.replaceChildren(
          section(
            `Promoted / suppressed tokens: neuron ${n}`,
            effectsView(eff, `Direct effect of neuron ${n}'s signed write (activation ${info ? num(info.activation, 3) : "?"} × its output column) on the logit lens of the block output (${nodePlace("block", node.layer)}).`),
          ),
        );
      })
      .catch((err: Error) => current === n && detail.replaceChildren(errorBox(err.message)));
  };

  const load = () => {
    list.replaceChildren(loadingBox());
    ctx
      .get<FfnInfo & { attribution?: NeuronDla[] }>(`api/trace/${ctx.traceId}/ffn?${qs({ layer: node.layer, pos: node.pos, k, ...ffnContrast(ctx.why, node.pos) })}`)
      .then((d) => {
        data = d;
        dlaSlot.replaceChildren(ffnDla(ctx.why, node.layer, node.pos, d.attribution) ?? "");
        drawList();
        showDetail();
      })
      .catch((err: Error) => list.replaceChildren(errorBox(err.message)));
  };
  load();
  return root;
}
