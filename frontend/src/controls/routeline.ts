// The line over the graph that says what is drawn: the route to which position (or to every
// position), what the model predicts there, the model and norm, or the file it came from.

import type { Target } from "../state";
import type { Graph, TraceResp } from "../types";
import { fill, h, pct, tokenSpan, truncate } from "../ui/dom";

export class RouteLine {
  readonly el = h("div", { class: "route-info small" });

  clear(): void {
    fill(this.el);
  }

  render(tr: TraceResp | null, target: Target, o: { file: { name: string; graph: Graph } | null; norm: string; chat: boolean }): void {
    if (!tr) {
      this.clear();
      return;
    }
    const where =
      target === "all"
        ? [h("span", { class: "muted" }, "Route to "), h("b", { "data-testid": "route-all" }, "every position"), h("span", { class: "muted" }, ` (all ${tr.tokens.length}: the union of their routes)`)]
        : [h("span", { class: "muted" }, "Route to "), tokenSpan(tr.tokens[target] ?? "", "tok", false, tr.token_bytes?.[target]), h("span", { class: "muted" }, ` (position ${target})`)];
    if (o.file) {
      const g = o.file.graph;
      const pred = target !== "all" && typeof g.target.token === "string" ? g.target.token : null;
      fill(
        this.el,
        where,
        pred !== null ? h("span", null, h("span", { class: "muted" }, " → predicts "), tokenSpan(pred, "tok pred")) : null,
        h("span", { class: "muted" }, ` · ${tr.model}${g.norm ? ` · ${String(g.norm).toUpperCase()}` : ""} · `),
        h("span", { class: "file-badge", "data-testid": "file-badge", title: `drawn from the file, pruned locally; the file holds edges down to threshold ${g.threshold}` }, `from file ${truncate(o.file.name, 48)}`),
        h("span", { class: "muted" }, " · top tokens, heads and neurons need the live model"),
      );
      return;
    }
    const p = target === "all" ? null : tr.predictions[target]?.[0];
    fill(
      this.el,
      where,
      p ? h("span", null, h("span", { class: "muted" }, " → predicts "), tokenSpan(p.token, "tok pred", false, p.bytes), h("span", { class: "muted" }, ` ${pct(p.prob)}`)) : null,
      h("span", { class: "muted" }, ` · ${tr.model} · ${o.norm.toUpperCase()}${o.chat ? " · chat" : ""}`),
    );
  }
}
