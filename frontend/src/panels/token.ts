// Token panel (a residual node was clicked): logit lens ("Top tokens") with rank changes, the
// tokens promoted / suppressed by the write that produced the node, and the node's edges in
// the drawn route (hover lights them in the graph, click walks along them).

import type { NodeInfo } from "../types";
import { qs } from "../api";
import { append, h, num, pct, tokenSpan, tokenText, truncate } from "../ui/dom";
import { effectsView, errorBox, loadingBox, panelShell, posToken, section } from "./common";
import type { NodeRef, PanelCtx } from "./context";
import { parseNodeId } from "./context";
import { edgePlace, layerName, nodePlace } from "../layers";

const KICKER: Record<string, string> = {
  block: "Block output",
  attn: "After attention",
  embed: "Embedding",
};

function rankChange(rc: number | null): HTMLElement {
  if (rc === null || rc === undefined) return h("span", { class: "rc rc-none", title: "no node below to compare with" }, "—");
  if (rc === 0) return h("span", { class: "rc rc-same", title: "same rank as in the node below" }, "=");
  const big = Math.abs(rc) >= 1000 ? (Math.abs(rc) / 1000).toFixed(1) + "k" : String(Math.abs(rc));
  return rc > 0
    ? h("span", { class: "rc rc-up", title: `up ${rc} places from the node below` }, "▲" + big)
    : h("span", { class: "rc rc-down", title: `down ${-rc} places from the node below` }, "▼" + big);
}

export function tokenPanel(ctx: PanelCtx, node: NodeRef): HTMLElement {
  const kicker = `${KICKER[node.kind]} · ${nodePlace(node.kind, node.layer)}`;
  const { root, body } = panelShell("token-panel", kicker, [posToken(ctx, node.pos), h("span", { class: "muted" }, ` pos ${node.pos}`)], ctx.close, node.layer);

  const normBox = h("input", { type: "checkbox", checked: ctx.lensNorm });
  const content = h("div", null, loadingBox());
  append(body, [
    h("div", { class: "panel-meta muted small" }, `node ${node.id}`),
    h("label", { class: "switch small", title: "apply the model's final norm before the unembedding (off: the raw projection)" }, normBox, " final norm in the logit lens"),
    content,
    connections(ctx, node),
  ]);
  const load = () => {
    content.replaceChildren(loadingBox());
    const k = 10;
    const params = qs({ kind: node.kind, layer: node.kind === "embed" ? -1 : node.layer, pos: node.pos, k, norm: ctx.lensNorm ? 1 : 0 });
    ctx
      .get<NodeInfo>(`api/trace/${ctx.traceId}/node?${params}`)
      .then((info) => {
        const top = h(
          "table",
          { class: "toptokens" },
          h("thead", null, h("tr", null, h("th", null, "#"), h("th", null, "token"), h("th", null, "probability"), h("th", { title: "rank change against the node below in the same position" }, "Δ rank"))),
          h(
            "tbody",
            null,
            info.top_tokens.map((t) =>
              h(
                "tr",
                { "data-rank": t.rank, "data-prob": t.prob },
                h("td", { class: "muted" }, String(t.rank + 1)),
                h("td", null, tokenSpan(t.token, "tok", true, t.bytes)),
                h("td", { class: "prob" }, h("span", { class: "pbar", style: `width:${Math.max(1, t.prob * 100).toFixed(1)}%` }), h("span", { class: "pval" }, pct(t.prob))),
                h("td", null, rankChange(t.rank_change)),
              ),
            ),
          ),
        );
        const writer =
          node.kind === "embed"
            ? h("div", { class: "muted small" }, "An embedding is not written by a block: nothing is promoted or suppressed.")
            : effectsView(
                { promoted: info.promoted, suppressed: info.suppressed },
                node.kind === "block"
                  ? `Direct effect on this node's logit lens of ${layerName(node.layer)}'s write (attention + FFN).`
                  : `Direct effect on this node's logit lens of ${layerName(node.layer)}'s attention write.`,
              );
        content.replaceChildren(section("Top tokens", top), section("Promoted / suppressed tokens", writer));
      })
      .catch((err: Error) => content.replaceChildren(errorBox(err.message)));
  };
  normBox.addEventListener("change", () => {
    ctx.setLensNorm(normBox.checked);
    load();
  });
  load();
  return root;
}

/** The node's incoming and outgoing edges in the drawn route, strongest first (rebuilt locally
 * when the threshold changes: see App.refreshConnections). */
export function connections(ctx: PanelCtx, node: NodeRef): HTMLElement | null {
  const g = ctx.graph();
  if (!g) return null;
  const el = connectionsBody(ctx, node, g);
  el.classList.add("conn-section");
  el.dataset.node = node.id;
  return el;
}

function connectionsBody(ctx: PanelCtx, node: NodeRef, g: NonNullable<ReturnType<PanelCtx["graph"]>>): HTMLElement {
  const i = g.p.byId.get(node.id);
  if (i === undefined) return section("In the route", h("div", { class: "muted small" }, "This node is not part of the fetched route."));
  const row = (ei: number, dir: "in" | "out") => {
    const e = g.p.edges[ei];
    const other = g.p.nodes[dir === "in" ? e.s : e.t];
    const otherRef = parseNodeId(other.id);
    const where = nodePlace(other.kind, other.layer);
    const from = dir === "in" ? other : g.p.nodes[i];
    const to = dir === "in" ? g.p.nodes[i] : other;
    return h(
      "li",
      {
        class: "conn",
        onmouseenter: () => ctx.hover({ edge: e.key }),
        onmouseleave: () => ctx.hover(null),
        onclick: () => (e.kind === "attn" ? ctx.selectEdge(e.key) : otherRef && ctx.selectNode(other.id)),
        "data-layer": to.layer,
        title: `${e.kind} edge ${edgePlace(from, to)}\n` + (e.kind === "attn" ? "click: heads of this edge" : "click: go to that node"),
      },
      h("span", { class: `kind-dot k-${e.kind}` }),
      h("span", { class: "conn-text" }, `${dir === "in" ? "from" : "to"} ‘${truncate(tokenText(ctx.tokens[other.pos] ?? ""), 14)}’ ${other.pos} · ${where}`),
      h("span", { class: "conn-bar" }, h("span", { style: `width:${Math.max(2, e.weight * 100).toFixed(1)}%`, class: `k-${e.kind}` })),
      h("span", { class: "conn-w" }, num(e.weight)),
    );
  };
  const inc = Array.from(g.p.incoming[i]).filter((e) => g.pr.edge[e]);
  const out = Array.from(g.p.outgoing[i]).filter((e) => g.pr.edge[e]);
  const hidden = g.p.incoming[i].length - inc.length;
  // the weights shown add up: drawn edges + bias share + the lighter edges below the threshold = 1
  // (the bias share comes with /2 graphs, on attn and block nodes: docs/graph-format.md)
  const bias = g.p.nodes[i].bias;
  const drawn = inc.reduce((a, e) => a + g.p.edges[e].weight, 0);
  const rest = bias === undefined ? null : Math.max(0, 1 - bias - drawn);
  const biasRow =
    bias !== undefined && bias > 0
      ? h(
          "li",
          { class: "conn conn-bias", "data-testid": "bias-share", "data-bias": String(bias), title: "the attention output bias b_O: part of this node that comes from no token, so no edge carries it" },
          h("span", { class: "kind-dot k-bias" }),
          h("span", { class: "conn-text" }, "bias b_O (no source token)"),
          h("span", { class: "conn-bar" }, h("span", { style: `width:${Math.max(2, bias * 100).toFixed(1)}%`, class: "k-bias" })),
          h("span", { class: "conn-w" }, num(bias)),
        )
      : null;
  const lighter =
    rest !== null
      ? rest >= 0.0005 || hidden > 0
        ? h("div", { class: "muted small", "data-testid": "below-threshold" }, `${num(rest)} in lighter incoming edges below the threshold${hidden > 0 ? ` (${hidden} of them fetched: lower the threshold to draw them)` : ""}.`)
        : null
      : hidden > 0
        ? h("div", { class: "muted small" }, `${hidden} lighter incoming edge${hidden > 1 ? "s" : ""} below the threshold (lower it to draw them).`)
        : null;
  return section(
    "In the route",
    inc.length ? h("ul", { class: "conns" }, inc.map((e) => row(e, "in"))) : h("div", { class: "muted small" }, node.kind === "embed" ? "Embeddings have no incoming edges." : "No incoming edge above the threshold."),
    biasRow ? h("ul", { class: "conns" }, biasRow) : null,
    lighter,
    out.length ? h("ul", { class: "conns" }, out.map((e) => row(e, "out"))) : null,
  );
}
