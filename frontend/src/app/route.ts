// The route to the target (a position, or every position): fetched at the threshold asked for and
// drawn as soon as it is here, then refined (the route at limits.fetchMin fetched in the
// background and swapped in, the view kept). Routes are cached per trace and target.

import { ApiError, qs, request } from "../api";
import { makeLayout } from "../graph/layout";
import { prepare, prune } from "../graph/prune";
import { $view, type Target } from "../state";
import type { Graph } from "../types";
import type { App } from "./app";
import { run } from "./run";
import { applyThreshold, floorTau, limits } from "./threshold";
import { showGeneration, stepTokenId } from "../gen/flow";

/** The GraphView's target position: -1 draws every position as a target. */
export function viewTarget(t: Target): number {
  return t === "all" ? -1 : t;
}

/** Routes are cached per trace, target and foil (why/: the contrastive route against a foil token). */
const cacheKey = (traceId: string, target: Target, foil: number | null = $view.get().foil) => `${traceId}|${target}|${foil ?? ""}`;

/** `foil`: the contrastive route against that token (why/); `tokenId`: the route toward that token (a generated step's, gen/flow.ts). */
export function routeUrl(traceId: string, target: Target, threshold: number, foil: number | null = null, tokenId?: number): string {
  return `api/trace/${traceId}/graph?${qs({ target, threshold, foil_id: foil ?? undefined, token_id: tokenId })}`;
}

export async function loadGraph(app: App): Promise<void> {
  const tr = app.trace;
  if (!tr) return;
  const seq = ++app.graphSeq;
  app.refine.cancel();
  const { target, threshold, foil } = $view.get();
  const key = cacheKey(tr.trace_id, target, foil);
  const want = Math.max(threshold, limits.fetchMin);
  let g = app.graphCache.get(key);
  if (!g && (app.file || app.cmp)) return; // a file holds one route only (setTarget keeps to it); a comparison draws its own
  if (g && canRefine(app, g) && g.threshold > want + 1e-9) g = undefined; // coarser than asked for now
  if (!g) {
    app.overlay.set("Computing the route…", true);
    const t0 = performance.now();
    try {
      g = await request<Graph>("GET", routeUrl(tr.trace_id, target, want, foil, stepTokenId(tr, target)));
    } catch (err) {
      if (seq !== app.graphSeq) return;
      if (err instanceof ApiError && err.code === "unknown_trace" && !app.retriedTrace) {
        app.retriedTrace = true; // evicted from the server's cache: trace again, once
        await run(app, { target, sel: $view.get().sel });
        app.retriedTrace = false;
        return;
      }
      app.overlay.set("The route could not be computed (see the message above).");
      app.banner.show(err);
      return;
    }
    app.traceTimings.graph_request = +((performance.now() - t0) / 1000).toFixed(3);
    if (seq !== app.graphSeq) return;
    logFetch(app, g, target, false);
    app.graphCache.set(key, g);
  }
  showGraph(app, g, false);
  app.inspector.render();
  if (canRefine(app, g)) startRefine(app);
}

/** Draw `g` as the route to the target; `keepView`: the finer route swapped in (zoom, pan,
 * selection and the open panel stay). */
export function showGraph(app: App, g: Graph, keepView: boolean): void {
  const tr = app.trace!;
  const v = $view.get();
  const t1 = performance.now();
  if (!keepView) renderRouteLine(app); // before measuring the drawing area: this line takes room
  app.prepared = prepare(g, tr.n_layers, tr.parallel);
  const { w, h } = app.view.size();
  app.pruned = prune(app.prepared, Math.max(v.threshold, floorTau(app)));
  app.prunedFrom = app.prepared;
  const layout = makeLayout(app.prepared, tr.tokens.length, w, h, app.compact ? app.pruned.node : undefined);
  app.layoutUsed = layout.used;
  showGeneration(app, tr); // the generated columns marked, the step control shown
  app.view.setGraph(app.prepared, layout, tr.tokens, tr.predictions, viewTarget(v.target), keepView);
  app.traceTimings[keepView ? "refine_layout_ms" : "layout_ms"] = +(performance.now() - t1).toFixed(1);
  if (!keepView) app.overlay.set(null);
  applyThreshold(app, $view.get().threshold);
  app.view.setSelection($view.get().sel);
  app.renderDebug();
}

/** A live route fetched above fetchMin: the finer one can be fetched. */
export function canRefine(app: App, g: Graph): boolean {
  return !app.file && !app.cmp && !!app.trace && app.trace.trace_id !== "synthetic" && g.threshold > limits.fetchMin + 1e-9;
}

/** Fetch the route at fetchMin in the background; a newer run, target or file cancels it. */
export function startRefine(app: App): void {
  const tr = app.trace;
  const p = app.prepared;
  if (!tr || !p || !canRefine(app, p.graph)) return;
  const seq = app.graphSeq;
  const { target, foil } = $view.get();
  const t0 = performance.now();
  app.refine.run(
    p.graph.threshold,
    limits.fetchMin,
    (signal) => request<Graph>("GET", routeUrl(tr.trace_id, target, limits.fetchMin, foil, stepTokenId(tr, target)), undefined, signal),
    (g) => {
      if (seq !== app.graphSeq || app.trace !== tr || $view.get().target !== target || $view.get().foil !== foil || app.file || app.cmp) return;
      app.traceTimings.refine_request = +((performance.now() - t0) / 1000).toFixed(3);
      logFetch(app, g, target, true);
      app.graphCache.set(cacheKey(tr.trace_id, target, foil), g);
      showGraph(app, g, true);
      if ($view.get().sel?.type === "node") app.inspector.refreshConnections();
    },
  );
  app.graphSection.classList.toggle("awaiting-refine", app.refine.waitingAt !== null);
}

function logFetch(app: App, g: Graph, target: Target, refine: boolean): void {
  app.fetchLog.push({ threshold: g.threshold, target, nodes: g.nodes.length, edges: g.edges.length, refine, foil: $view.get().foil });
  if (app.fetchLog.length > 50) app.fetchLog.shift();
}

export function renderRouteLine(app: App): void {
  const v = $view.get();
  app.routeLine.render(app.trace, v.target, { file: app.file, norm: v.norm, chat: v.chat });
  app.why?.render(); // the foil bar and the contrast line (why/)
}

/** Remember `g` as the route of the trace shown to `target` (a file's, or a synthetic one). */
export function cacheRoute(app: App, target: Target, g: Graph): void {
  app.graphCache.set(cacheKey(app.trace!.trace_id, target, null), g);
}

/** The route fetched for the trace shown to `target` against `foil`, if it is here. */
export function cachedRoute(app: App, target: Target, foil: number | null): Graph | undefined {
  return app.trace ? app.graphCache.get(cacheKey(app.trace.trace_id, target, foil)) : undefined;
}
