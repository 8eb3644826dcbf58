// The inspector: which panel the selection opens (a residual node: token panel; an FFN node:
// neuron panel; an attention edge: head panel), the hint when nothing is selected, and for a
// graph opened from a file the offline panels (what the file itself holds).

import { request } from "../api";
import type { App } from "../app/app";
import { select } from "../app/selection";
import { parseEdgeKey } from "../graph/prune";
import { $view, setView } from "../state";
import { h } from "../ui/dom";
import { parseNodeId, type PanelCtx } from "./context";
import { headPanel } from "./head";
import { neuronPanel } from "./neuron";
import { offlineCtx, offlinePanel } from "./offline";
import { connections, tokenPanel } from "./token";
import { comparePanel } from "../compare/flow";

export class Inspector {
  /** The side panel's body (the panel shown). */
  readonly body = h("div", { class: "side-body" });
  private connTimer: number | undefined;

  constructor(private app: App) {}

  private ctx(): PanelCtx | null {
    const app = this.app;
    const tr = app.trace;
    if (!tr) return null;
    const v = $view.get();
    return {
      traceId: tr.trace_id,
      tokens: tr.tokens,
      nLayers: tr.n_layers,
      nHeads: tr.n_heads,
      parallel: !!tr.parallel,
      get: <T>(path: string) =>
        request<T>("GET", path).catch((err) => {
          app.banner.show(err);
          throw err;
        }),
      close: () => select(app, null),
      selectEdge: (key) => select(app, { type: "edge", key }),
      selectNode: (id) => select(app, { type: "node", id }),
      hover: (ref) => app.view.hoverExternal(ref),
      graph: () => (app.prepared && app.pruned ? { p: app.prepared, pr: app.pruned } : null),
      head: v.head,
      setHead: (hd) => setView({ head: hd }),
      neuron: v.neuron,
      setNeuron: (n) => setView({ neuron: n }),
      lensNorm: app.lensNorm,
      setLensNorm: (on) => (app.lensNorm = on),
      why: app.why?.panelCtx() ?? null,
    };
  }

  /** Show the panel of the selection (or the hint). */
  render(): void {
    if (this.app.file) return this.renderFile();
    const cmp = comparePanel(this.app); // a comparison: what changed, whatever is selected
    if (cmp) return this.show(cmp);
    const ctx = this.ctx();
    const sel = $view.get().sel;
    if (!ctx || !sel) return this.show(this.hint());
    if (sel.type === "node") {
      const ref = parseNodeId(sel.id);
      if (!ref || ref.pos >= ctx.tokens.length) return this.show(this.hint(`Unknown node ${sel.id}.`));
      return this.show(ref.kind === "ffn" ? neuronPanel(ctx, ref) : tokenPanel(ctx, ref));
    }
    const e = parseEdgeKey(sel.key);
    const s = e && parseNodeId(e.source);
    const t = e && parseNodeId(e.target);
    if (!e || !s || !t || e.kind !== "attn") return this.show(this.hint(`Unknown edge ${sel.key}.`));
    this.show(headPanel(ctx, { layer: t.layer, source: s.pos, target: t.pos }));
  }

  private show(el: HTMLElement): void {
    this.body.replaceChildren(el);
  }

  /** A graph from a file: what the file holds about the selection, no API calls. */
  private renderFile(): void {
    const app = this.app;
    const file = app.file!;
    const sel = $view.get().sel;
    if (!sel || !app.trace) return this.show(this.hint());
    const ctx = offlineCtx({
      tokens: app.trace.tokens,
      nLayers: app.trace.n_layers,
      nHeads: app.trace.n_heads,
      parallel: app.prepared?.parallel ?? false,
      graph: () => (app.prepared && app.pruned ? { p: app.prepared, pr: app.pruned } : null),
      select: (s) => select(app, s),
      hover: (ref) => app.view.hoverExternal(ref),
    });
    const panel = offlinePanel(ctx, sel, `the file ${file.name}`, "Run the prompt with its model to see them.");
    this.show(panel ?? this.hint(sel.type === "node" ? `Unknown node ${sel.id}.` : `Unknown edge ${sel.key}.`));
  }

  /** The token panel's "In the route" list depends on the threshold: rebuild it cheaply. */
  refreshConnections(): void {
    clearTimeout(this.connTimer);
    this.connTimer = window.setTimeout(() => {
      const old = this.body.querySelector<HTMLElement>(".conn-section");
      const ctx = this.ctx();
      const ref = old?.dataset.node ? parseNodeId(old.dataset.node) : null;
      if (!old || !ctx || !ref) return;
      const fresh = connections(ctx, ref);
      if (fresh) old.replaceWith(fresh);
    }, 150);
  }

  private hint(extra?: string): HTMLElement {
    const app = this.app;
    return h(
      "div",
      { class: "hint" },
      extra ? h("p", { class: "inline-error" }, extra) : null,
      h("h2", null, "Inspector"),
      app.file
        ? h(
            "div",
            { class: "offline-note", "data-testid": "offline-note" },
            h("b", null, `Opened from ${app.file.name}. `),
            "Hover, zoom and the threshold slider work on the file's graph; a click shows what the file holds about a node or an edge. Top tokens, attention patterns and neurons need the live model: run the prompt to see them.",
          )
        : null,
      app.trace
        ? h(
            "ul",
            null,
            h("li", null, h("b", null, "Click a node"), " (circle) to see its top tokens in the logit lens and what its block promoted or suppressed."),
            h("li", null, h("b", null, "Click an attention edge"), " (blue) for the heads that carry it, their attention pattern and contribution map."),
            h("li", null, h("b", null, "Click an FFN node"), " (pink square) for its top neurons."),
            h("li", null, "Hover a node to light its whole route; hold ", h("kbd", null, "Shift"), " to freeze the hover."),
            h("li", null, "Drag to pan, scroll to zoom, ", h("kbd", null, "F"), " fits, ", h("kbd", null, "←"), h("kbd", null, "→"), " change the target, ", h("kbd", null, "["), h("kbd", null, "]"), " step the threshold."),
          )
        : h("p", { class: "muted" }, "Choose a model and a prompt and press Run. The route graph shows how information flows from the input tokens (bottom) to the prediction (top)."),
    );
  }
}
