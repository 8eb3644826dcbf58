// The hover tooltip of a node or an edge: what it is and where (the one layer numbering of
// layers.ts: "block output · L22 out", "attention edge · L23: L22 out → L23 attn"), its token(s),
// weights, heads and bias share. The node id is shown only as a dim "id" line, never as a layer.

import { nodePlace, edgePlace } from "../layers";
import { bytesNote, clamp, h, num, pct, tokenText, truncate } from "../ui/dom";
import type { Scene } from "./scene";
import { EDGE_NAME, KIND_NAME } from "./style";
import { type DiffEdge, deltaOf } from "./diff";

export class Tooltip {
  readonly el: HTMLDivElement = h("div", { class: "tooltip", role: "tooltip" });

  constructor(
    private s: Scene,
    private wrap: HTMLElement,
    private frozen: () => boolean,
  ) {}

  private tokLabel(pos: number): string {
    return `‘${truncate(tokenText(this.s.tokens[pos] ?? "?"), 24)}’ (${pos})`;
  }

  /** A token's bytes (the graph's `token_bytes`), "" when the graph has none. */
  private tokBytes(pos: number): string {
    return bytesNote(this.s.p?.graph.token_bytes?.[pos]);
  }

  node(i: number): HTMLElement {
    const p = this.s.p!;
    const pr = this.s.pr!;
    const n = p.nodes[i];
    const inc = Array.from(p.incoming[i]).filter((e) => pr.edge[e]);
    const rows = inc.slice(0, 4).map((ei) => {
      const e = p.edges[ei];
      const src = p.nodes[e.s];
      return h("div", { class: "tt-row" }, h("span", { class: `kind-dot k-${e.kind}` }), `${EDGE_NAME[e.kind]} from ${this.tokLabel(src.pos)} · ${nodePlace(src.kind, src.layer)}`, h("b", null, num(e.weight)));
    });
    return h(
      "div",
      null,
      h("div", { class: "tt-title" }, `${KIND_NAME[n.kind]} · ${nodePlace(n.kind, n.layer)}`),
      h("div", null, "token ", h("b", null, this.tokLabel(n.pos)), h("span", { class: "muted" }, this.tokBytes(n.pos))),
      this.s.isTarget(i) ? h("div", { class: "tt-dim" }, "the route starts here (target)") : null,
      h("div", { class: "tt-dim" }, `id ${n.id}`),
      n.degenerate ? h("div", { class: "tt-warn" }, "degenerate: parts cancel, importances fall back to norms") : null,
      rows.length ? h("div", { class: "tt-sub" }, `incoming in route (${inc.length})`) : null,
      rows,
      // attn and block nodes of /2 graphs: the share no edge carries (edges in + bias = 1)
      n.bias !== undefined && n.bias > 0
        ? h("div", { class: "tt-row", "data-testid": "tt-bias" }, h("span", { class: "kind-dot k-bias" }), "bias b_O (no source token)", h("b", null, num(n.bias)))
        : null,
      h("div", { class: "tt-hint" }, n.kind === "ffn" ? "click: neurons" : "click: top tokens"),
    );
  }

  edge(i: number): HTMLElement {
    const p = this.s.p!;
    const e = p.edges[i];
    const s = p.nodes[e.s];
    const t = p.nodes[e.t];
    const heads = Object.entries(e.heads ?? {})
      .map(([k, v]) => [Number(k), v] as [number, number])
      .sort((a, b) => b[1] - a[1]);
    return h(
      "div",
      null,
      h("div", { class: "tt-title" }, h("span", { class: `kind-dot k-${e.kind}` }), `${EDGE_NAME[e.kind]} edge · ${edgePlace(s, t)}`),
      h("div", null, this.tokLabel(s.pos), " → ", this.tokLabel(t.pos)),
      h("div", null, "weight ", h("b", null, num(e.weight, 4))),
      deltaOf(e) !== null ? this.diffRows(e) : null,
      heads.length
        ? h(
            "div",
            { class: "tt-heads" },
            h("div", { class: "tt-sub" }, `heads (${heads.length})`),
            heads.slice(0, 5).map(([hd, w]) =>
              h("div", { class: "tt-row" }, `head ${hd}`, h("span", { class: "tt-bar", style: `width:${Math.max(2, (w / e.weight) * 60)}px` }), h("b", null, `${num(w)} · ${pct(w / e.weight)}`)),
            ),
            heads.length > 5 ? h("div", { class: "tt-dim" }, `+${heads.length - 5} more`) : null,
          )
        : null,
      h("div", { class: "tt-dim" }, `id ${e.source} → ${e.target}`),
      e.kind === "attn" ? h("div", { class: "tt-hint" }, "click: heads") : null,
    );
  }

  /** A comparison's edge: its weight in each route and the change (B minus A). */
  private diffRows(e: DiffEdge): HTMLElement {
    const d = e.delta ?? 0;
    return h(
      "div",
      { class: "tt-diff", "data-testid": "tt-diff" },
      h("div", null, "weight in A ", h("b", null, num(e.weight_a ?? 0, 4)), " · in B ", h("b", null, num(e.weight_b ?? 0, 4))),
      h("div", null, "change B − A ", h("b", null, `${d > 0 ? "+" : ""}${num(d, 4)}`)),
    );
  }

  show(content: HTMLElement, e?: PointerEvent): void {
    this.el.replaceChildren(content);
    this.el.style.display = "block";
    if (e) this.move(e);
  }

  hide(): void {
    this.el.style.display = "none";
  }

  move(e: PointerEvent): void {
    if (this.el.style.display !== "block" || this.frozen()) return;
    const r = this.wrap.getBoundingClientRect();
    const x = e.clientX - r.left;
    const y = e.clientY - r.top;
    const tw = this.el.offsetWidth;
    const th = this.el.offsetHeight;
    const left = x + 14 + tw > r.width ? x - tw - 14 : x + 14;
    const top = clamp(y + 14 + th > r.height ? y - th - 10 : y + 14, 4, Math.max(4, r.height - th - 4));
    this.el.style.transform = `translate(${Math.max(4, left)}px, ${top}px)`;
  }
}
