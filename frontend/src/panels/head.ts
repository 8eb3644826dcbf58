// Head panel (an attention edge was clicked): the heads that carry the edge with their share,
// "All heads" as the whole edge, and for the selected head its attention pattern and
// contribution map (heatmaps, the edge's cell marked) and the tokens its write promotes and
// suppresses at the edge's target position.

import type { EdgeInfo, HeadInfo } from "../types";
import { qs } from "../api";
import { h, num, pct } from "../ui/dom";
import { effectsView, errorBox, loadingBox, panelShell, posToken, section } from "./common";
import { attnTargetId, parseNodeId, type PanelCtx } from "./context";
import { edgePlace, layerName } from "../layers";
import { heatmap } from "./heatmap";
import { qkSection } from "./qk";
import { dlaCell, headDla } from "../why/panels";
import type { Attribution } from "../why/types";

const headCache = new Map<string, Promise<HeadInfo>>();

export function headPanel(ctx: PanelCtx, edge: { layer: number; source: number; target: number }): HTMLElement {
  const { root, body } = panelShell(
    "head-panel",
    `Attention edge · ${attnEdgePlace(edge.layer, edge.source, edge.target, ctx.parallel)}`,
    [posToken(ctx, edge.source), h("span", { class: "muted" }, ` ${edge.source} → `), posToken(ctx, edge.target), h("span", { class: "muted" }, ` ${edge.target}`)],
    ctx.close,
    edge.layer,
  );
  const list = h("div", { class: "heads" }, loadingBox());
  const detail = h("div", { class: "head-detail" });
  const why = h("div", { class: "qk-slot" }); // "Why this head attends" (qk.ts), loaded when opened
  const dlaSlot = h("div", { class: "dla-slot" }); // the head's direct logit attribution (why/panels.ts)
  body.append(list, dlaSlot, detail, why);
  let info: EdgeInfo | null = null;
  let current = ctx.head ?? -1;
  let dla: Attribution | null = null;
  ctx.why?.attribution()?.then((a) => ((dla = a), drawList())).catch(() => {});

  const drawList = () => {
    if (!info) return;
    const max = Math.max(1e-9, ...info.heads.map((x) => x.weight));
    const item = (head: number, weight: number, label: string, share: string) =>
      h(
        "li",
        { class: "head-row" + (head === current ? " active" : "") + (dla ? " with-dla" : ""), "data-head": head, onclick: () => pick(head), tabindex: 0, onkeydown: (e: Event) => (e as KeyboardEvent).key === "Enter" && pick(head) },
        h("span", { class: "head-name" }, label),
        h("span", { class: "hbar" }, h("span", { style: `width:${Math.max(1, (weight / (head === -1 ? info!.weight || 1 : max)) * 100).toFixed(1)}%` })),
        h("span", { class: "head-w" }, num(weight)),
        h("span", { class: "head-share muted" }, share),
        dlaCell(dla, edge.layer, head),
      );
    list.replaceChildren(
      h("div", { class: "panel-meta muted small" }, `edge weight ${num(info.weight, 4)} in the node after attention at position ${edge.target}` + (dla ? ` · last column: each head's direct logit attribution at the target (position ${ctx.why?.pos})` : "")),
      section(
        "Heads carrying this edge",
        h(
          "ul",
          { class: "head-list" },
          item(-1, info.weight, "All heads", "100%"),
          info.heads.map((x) => item(x.head, x.weight, `head ${x.head}`, info!.weight > 0 ? pct(x.weight / info!.weight) : "–")),
        ),
      ),
    );
  };

  const pick = (head: number) => {
    current = head;
    ctx.setHead(head);
    drawList();
    loadHead();
  };

  const loadHead = () => {
    dlaSlot.replaceChildren(headDla(ctx.why, edge.layer, current, edge.target) ?? "");
    why.replaceChildren(qkSection(ctx, { layer: edge.layer, head: current, query: edge.target, key: edge.source }));
    detail.replaceChildren(loadingBox(`Loading ${current === -1 ? "all heads" : "head " + current}…`));
    const key = `${ctx.traceId}|${edge.layer}|${current}|${edge.target}`;
    let p = headCache.get(key);
    if (!p) {
      p = ctx.get<HeadInfo>(`api/trace/${ctx.traceId}/head?${qs({ layer: edge.layer, head: current, pos: edge.target })}`);
      headCache.set(key, p);
      p.catch(() => headCache.delete(key));
      if (headCache.size > 24) headCache.delete(headCache.keys().next().value!);
    }
    const want = current;
    p.then((d) => {
      if (want !== current) return;
      const name = current === -1 ? "all heads" : `head ${current}`;
      const mark = { row: edge.target, col: edge.source };
      const size = Math.max(180, Math.min(380, (detail.clientWidth || 380) - 6));
      const onCell = (row: number, col: number) => ctx.selectEdge(`attn|x:${edge.layer}:${col}|${attnTargetId(edge.layer, row, ctx.parallel)}`);
      detail.replaceChildren(
        section(
          `${layerName(edge.layer)}, ${name}`,
          h(
            "div",
            { class: "heatmaps" },
            heatmap({ hook: "pattern", title: "Attention pattern", caption: current === -1 ? "mean over heads" : "A[h, query, key]", matrix: d.pattern, tokens: ctx.tokens, scale: "blues", mark, size }),
            heatmap({ hook: "contributions", title: "Contribution map", caption: "importance of each key in the node after attention; click a cell to open that edge", matrix: d.contributions, tokens: ctx.tokens, scale: "oranges", mark, size, onCellClick: onCell }),
          ),
        ),
        section(
          "Promoted / suppressed tokens",
          effectsView(d, `Direct effect of ${name === "all heads" ? "the whole attention write" : name + "'s write"} into position ${edge.target} on the logit lens of the node after attention.`),
        ),
      );
    }).catch((err: Error) => {
      if (want === current) detail.replaceChildren(errorBox(err.message));
    });
  };

  ctx
    .get<EdgeInfo>(`api/trace/${ctx.traceId}/edge?${qs({ layer: edge.layer, source: edge.source, target: edge.target })}`)
    .then((d) => {
      info = d;
      drawList();
    })
    .catch((err: Error) => list.replaceChildren(errorBox(err.message)));
  loadHead();
  return root;
}

/** "L4: L3 out → L4 attn" for the attention edge of block `layer` from `source` into `target`. */
export function attnEdgePlace(layer: number, source: number, target: number, parallel: boolean): string {
  const s = parseNodeId(`x:${layer}:${source}`)!;
  const t = parseNodeId(attnTargetId(layer, target, parallel))!;
  return edgePlace(s, t);
}
