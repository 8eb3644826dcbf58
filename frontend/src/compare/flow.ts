// Comparing two prompts: the trace shown is prompt A; "Compare" traces a prompt B on the same
// model (POST /api/trace), then POST /api/compare aligns the two routes in one graph whose edges
// carry weight_a, weight_b and delta (docs/graph-format.md "Comparison graphs"). The graph view
// draws it coloured by delta (graph/diff.ts); the side panel lists the heads and neurons whose
// importance changed most (panel.ts). The threshold slider redoes the comparison; "Exit compare",
// a new target or a Run return to prompt A's single route. While it is drawn, app.trace is a
// stand-in over the comparison's columns (the real trace A is kept here) and $view.compare holds
// prompt B (the URL's compare=), $view.target prompt A's target.

import { ApiError, request } from "../api";
import { makeLayout } from "../graph/layout";
import { prepare, prune } from "../graph/prune";
import { edgeColorOf } from "../graph/diff";
import { $view, setView, type Target } from "../state";
import type { TraceResp } from "../types";
import { clamp } from "../ui/dom";
import type { App } from "../app/app";
import { loadGraph, renderRouteLine } from "../app/route";
import { applyThreshold, floorTau, limits } from "../app/threshold";
import type { CompareResp } from "../gen/types";
import { CompareUi } from "./panel";

const TOP = 20; // heads and neurons listed

export interface Comparison {
  prompt: string;
  traceA: TraceResp;
  traceB: TraceResp;
  targetA: Target;
  resp: CompareResp;
  /** The threshold the comparison was computed at. */
  threshold: number;
}

let ui: CompareUi | null = null;
let seq = 0;
let timer: number | undefined;

/** The Compare button and its form (in the graph toolbar), the legend line and the side panel. */
export function installCompare(app: App): void {
  ui = new CompareUi({
    open: () => ui!.showForm(app.cmp?.prompt ?? $view.get().prompt),
    run: (b) => openCompare(app, b),
    close: () => exitCompare(app),
  });
  app.graphSection.querySelector(".graph-toolbar > .spacer")?.after(ui.openBtn);
  app.graphSection.append(ui.form);
}

export function comparePanel(app: App): HTMLElement | null {
  return app.cmp && ui ? ui.panel(app.cmp) : null;
}

/** After a run: the comparison a URL asked for. */
export async function afterRun(app: App, runSeq: number): Promise<void> {
  const b = app.cmpPending;
  app.cmpPending = "";
  if (b && runSeq === app.runSeq && app.trace && !app.file) await openCompare(app, b);
}

/** Trace prompt B and compare it with the trace shown (prompt A). */
export async function openCompare(app: App, promptB: string): Promise<void> {
  if (!promptB.trim()) return;
  if (app.cmp) exitCompare(app, undefined, false);
  const a = app.trace;
  if (!a || app.file || a.trace_id === "synthetic") {
    app.banner.show(new ApiError("Run a prompt first: the comparison is between the route shown and a second prompt's.", "no_trace", 0, "compare"));
    return;
  }
  const my = ++seq;
  const runSeq = app.runSeq;
  const v = $view.get();
  const targetA = v.target;
  ui?.setBusy(true);
  app.overlay.set("Tracing the second prompt…", true);
  try {
    const b = await request<TraceResp>("POST", "api/trace", { model: a.model, prompt: promptB, chat: v.chat, norm: v.norm });
    if (my !== seq || runSeq !== app.runSeq || app.trace !== a) return;
    const threshold = Math.max(v.threshold, limits.fetchMin);
    const resp = await fetchCompare(a, b, targetA, threshold);
    if (my !== seq || runSeq !== app.runSeq || app.trace !== a) return;
    app.cmp = { prompt: promptB, traceA: a, traceB: b, targetA, resp, threshold };
    app.refine.cancel();
    ++app.graphSeq; // a single route still on its way no longer lands
    app.trace = standIn(a, b, resp);
    setView({ compare: promptB, sel: null, head: null, neuron: null });
    ui?.hideForm();
    drawCompare(app, false);
  } catch (err) {
    if (my !== seq) return;
    app.overlay.set(null);
    app.banner.show(err);
  } finally {
    if (my === seq) ui?.setBusy(false);
  }
}

function fetchCompare(a: TraceResp, b: TraceResp, targetA: Target, threshold: number): Promise<CompareResp> {
  const target_a = targetA === "all" ? -1 : targetA;
  return request<CompareResp>("POST", "api/compare", { trace_a: a.trace_id, trace_b: b.trace_id, target_a, target_b: -1, threshold, top: TOP });
}

/** A trace over the comparison's columns (what the drawing, the layout and the exports read). */
function standIn(a: TraceResp, b: TraceResp, resp: CompareResp): TraceResp {
  const tokens = resp.graph.tokens;
  return { trace_id: `compare:${a.trace_id}:${b.trace_id}`, model: a.model, facts: a.facts, tokens, n_layers: a.n_layers, n_heads: a.n_heads, parallel: a.parallel, predictions: tokens.map(() => []) };
}

/** Draw the comparison's graph (`keepView`: the same comparison redone at another threshold). */
function drawCompare(app: App, keepView: boolean): void {
  const c = app.cmp!;
  const tr = app.trace!;
  const g = c.resp.graph;
  app.file = null;
  app.prepared = prepare(g, tr.n_layers, tr.parallel);
  const { w, h } = app.view.size();
  app.pruned = prune(app.prepared, Math.max($view.get().threshold, floorTau(app)));
  app.prunedFrom = app.prepared;
  const layout = makeLayout(app.prepared, tr.tokens.length, w, h, app.compact ? app.pruned.node : undefined);
  app.layoutUsed = layout.used;
  app.view.tail = -1;
  if (app.stepper) app.stepper.el.hidden = true; // steps are prompt A's: back with Exit compare
  app.view.setGraph(app.prepared, layout, tr.tokens, tr.predictions, g.target.pos ?? -1, keepView);
  app.overlay.set(null);
  app.graphSection.classList.add("comparing");
  ui?.renderLine(c, app.routeLine.el);
  applyThreshold(app, $view.get().threshold);
  app.view.setSelection($view.get().sel);
  app.inspector.render();
  app.renderDebug();
}

/** The threshold changed while comparing: the comparison is redone at it (once the slider rests). */
export function compareThreshold(app: App, tau: number): void {
  const c = app.cmp;
  if (!c) return;
  clearTimeout(timer);
  if (Math.abs(tau - c.threshold) < 1e-9) return;
  timer = window.setTimeout(async () => {
    if (app.cmp !== c) return;
    const my = ++seq;
    ui?.setBusy(true);
    try {
      const resp = await fetchCompare(c.traceA, c.traceB, c.targetA, tau);
      if (my !== seq || app.cmp !== c) return;
      c.resp = resp;
      c.threshold = tau;
      drawCompare(app, true);
    } catch (err) {
      if (my === seq) app.banner.show(err);
    } finally {
      if (my === seq) ui?.setBusy(false);
    }
  }, 250);
}

/** Back to prompt A's single route (to `target`, or the one it showed); `draw`: fetch and draw it. */
export function exitCompare(app: App, target?: Target, draw = true): void {
  const c = app.cmp;
  if (!c) return;
  dropCompare(app);
  app.trace = c.traceA;
  app.prepared = app.pruned = app.prunedFrom = null;
  const T = c.traceA.tokens.length;
  const t = target === undefined ? c.targetA : target === "all" ? "all" : clamp(target, 0, T - 1);
  setView({ compare: "", target: t, sel: null, head: null, neuron: null });
  if (!draw) return;
  renderRouteLine(app);
  app.inspector.render();
  loadGraph(app);
}

/** Forget the comparison (a run replaces the trace). */
export function dropCompare(app: App): void {
  clearTimeout(timer);
  ++seq;
  ui?.setBusy(false);
  ui?.hideForm();
  if (!app.cmp) return;
  app.cmp = null;
  app.graphSection.classList.remove("comparing");
}

/** For the debug hook: the drawn comparison's edges with their colours as painted. */
export function compareDebug(app: App): unknown {
  const c = app.cmp;
  if (!c || !app.prepared || !app.pruned) return null;
  const p = app.prepared;
  return {
    prompt: c.prompt,
    threshold: c.threshold,
    heads: c.resp.heads,
    edges: app.pruned.edgeList.map((i) => {
      const e = p.edges[i] as (typeof p.edges)[number] & { delta?: number; weight_a?: number; weight_b?: number };
      return { source: e.source, target: e.target, kind: e.kind, weight: e.weight, weight_a: e.weight_a, weight_b: e.weight_b, delta: e.delta, color: edgeColorOf(e) };
    }),
  };
}
