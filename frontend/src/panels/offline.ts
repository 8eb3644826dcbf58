// Inspector panels for a route graph without a live model behind it (a graph JSON opened from
// a file in the web app, or drawn by the standalone viewer): what the graph itself holds (the
// node's edges in the drawn route, an attention edge's weight and heads) and a note that top
// tokens, attention patterns and neurons need the live model. No API calls.

import type { Selection } from "../types";
import { type Prepared, type Pruned, parseEdgeKey } from "../graph/prune";
import { h, num, pct } from "../ui/dom";
import { panelShell, posToken, section } from "./common";
import { parseNodeId, type PanelCtx } from "./context";
import { connections } from "./token";
import { edgePlace, nodePlace } from "../layers";

const KICKER: Record<string, string> = {
  block: "Block output",
  attn: "After attention",
  embed: "Embedding",
  ffn: "FFN",
};

/** What a click selects: a residual edge opens the node it writes into, an FFN edge its FFN
 * node (the same rule as the web app's inspector). */
export function canonicalSelection(sel: Selection | null): Selection | null {
  if (sel?.type !== "edge") return sel;
  const e = parseEdgeKey(sel.key);
  if (e?.kind === "resid") return { type: "node", id: e.target };
  if (e?.kind === "ffn") return { type: "node", id: e.source.startsWith("f:") ? e.source : e.target };
  return sel;
}

/** A PanelCtx for panels that must not call the server (get() always refuses). */
export function offlineCtx(o: {
  tokens: string[];
  nLayers: number;
  nHeads: number;
  parallel: boolean;
  graph: () => { p: Prepared; pr: Pruned } | null;
  select: (sel: Selection | null) => void;
  hover: (ref: { edge?: string; node?: string } | null) => void;
}): PanelCtx {
  return {
    traceId: "",
    tokens: o.tokens,
    nLayers: o.nLayers,
    nHeads: o.nHeads,
    parallel: o.parallel,
    get: () => Promise.reject(new Error("no live model behind this graph")),
    close: () => o.select(null),
    selectEdge: (key) => o.select(canonicalSelection({ type: "edge", key })),
    selectNode: (id) => o.select({ type: "node", id }),
    hover: o.hover,
    graph: o.graph,
    head: null,
    setHead: () => {},
    neuron: null,
    setNeuron: () => {},
    lensNorm: true,
    setLensNorm: () => {},
  };
}

/** The note shown where the live model's details would be. `source` says where the graph came
 * from (e.g. `the file x.json`). */
export function offlineNote(what: string, source: string, how: string): HTMLElement {
  return h(
    "div",
    { class: "offline-note", "data-testid": "offline-note" },
    h("b", null, `${what} need the live model. `),
    `This view shows only the route graph from ${source}. `,
    how,
  );
}

/** The panel for a selection (after canonicalSelection), or null when it names nothing known. */
export function offlinePanel(ctx: PanelCtx, sel: Selection, source: string, how: string): HTMLElement | null {
  const g = ctx.graph();
  if (sel.type === "node") {
    const ref = parseNodeId(sel.id);
    if (!ref || ref.pos >= ctx.tokens.length) return null;
    const ffn = ref.kind === "ffn";
    const kicker = `${KICKER[ref.kind]} · ${nodePlace(ref.kind, ref.layer)}`;
    const { root, body } = panelShell(ffn ? "neuron-panel" : "token-panel", kicker, [posToken(ctx, ref.pos), h("span", { class: "muted" }, ` pos ${ref.pos}`)], ctx.close, ref.layer);
    root.classList.add("offline");
    root.dataset.offline = "1";
    const i = g?.p.byId.get(ref.id);
    const n = i !== undefined ? g!.p.nodes[i] : null;
    body.append(
      h("div", { class: "panel-meta muted small" }, `node ${ref.id}`),
      n?.degenerate ? h("div", { class: "tt-warn" }, "degenerate: its parts cancel, importances fall back to norms") : "",
      offlineNote(ffn ? "The FFN's top neurons and their promoted / suppressed tokens" : "Top tokens (logit lens) and promoted / suppressed tokens", source, how),
      connections(ctx, ref) ?? "",
    );
    return root;
  }
  const e = parseEdgeKey(sel.key);
  const s = e && parseNodeId(e.source);
  const t = e && parseNodeId(e.target);
  if (!e || !s || !t || e.kind !== "attn") return null;
  const layer = t.layer;
  const { root, body } = panelShell(
    "head-panel",
    `Attention edge · ${edgePlace(s, t)}`,
    [posToken(ctx, s.pos), h("span", { class: "muted" }, ` ${s.pos} → `), posToken(ctx, t.pos), h("span", { class: "muted" }, ` ${t.pos}`)],
    ctx.close,
    layer,
  );
  root.classList.add("offline");
  root.dataset.offline = "1";
  const ei = g?.p.byKey.get(sel.key);
  const edge = ei !== undefined ? g!.p.edges[ei] : null;
  if (!edge) {
    body.append(h("div", { class: "muted small" }, "This edge is not in the graph."));
    return root;
  }
  const heads = Object.entries(edge.heads ?? {})
    .map(([k, v]) => ({ head: Number(k), weight: v }))
    .sort((a, b) => b.weight - a.weight);
  const max = Math.max(1e-9, ...heads.map((x) => x.weight));
  const row = (label: string, weight: number, share: string, scale: number) =>
    h(
      "li",
      { class: "head-row", style: "cursor:default" },
      h("span", { class: "head-name" }, label),
      h("span", { class: "hbar" }, h("span", { style: `width:${Math.max(1, (weight / scale) * 100).toFixed(1)}%` })),
      h("span", { class: "head-w" }, num(weight)),
      h("span", { class: "head-share muted" }, share),
    );
  body.append(
    h("div", { class: "panel-meta muted small" }, `edge weight ${num(edge.weight, 4)} in the node after attention at position ${t.pos}`),
    heads.length
      ? section(
          "Heads carrying this edge",
          h(
            "ul",
            { class: "head-list" },
            row("All heads", edge.weight, "100%", edge.weight || 1),
            heads.map((x) => row(`head ${x.head}`, x.weight, edge.weight > 0 ? pct(x.weight / edge.weight) : "–", max)),
          ),
        )
      : h("div", { class: "muted small" }, "The graph holds no per-head split for this edge."),
    offlineNote("Attention patterns, contribution maps and the heads' promoted / suppressed tokens", source, how),
  );
  return root;
}
