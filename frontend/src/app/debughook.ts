// window.__routelensDebug: what the browser tests and benchmarks/bench_app.py read (redraw
// timings, readiness of the hooks, the refinement, the routes fetched) and drive (a threshold, a
// synthetic big graph, the prune cross-check, a redraw benchmark). Its names are a contract.

import { prune, pruneWalk } from "../graph/prune";
import { $view, setView } from "../state";
import { synthGraph, synthTokens } from "../synth";
import type { App } from "./app";
import { leaveFile } from "./file";
import { cacheRoute, loadGraph } from "./route";
import { applyThreshold, limits } from "./threshold";
import { compareDebug } from "../compare/flow";

export function installDebugHook(app: App): void {
  const hook = {
    get lastRedrawMs() {
      return app.lastRedrawMs;
    },
    get lastDomMs() {
      return app.view?.lastDomMs ?? 0;
    },
    get lastFrameMs() {
      return app.lastFrameMs;
    },
    /** The data-testid hooks match the drawn route exactly (after a dense change they catch up in idle time). */
    get hooksInSync() {
      return app.view?.hooksInSync ?? true;
    },
    /** The background job has attached and placed a hook for every node and edge fetched. */
    get hooksReady() {
      return app.view?.hooksReady ?? false;
    },
    /** Idle-time preparation done: hooks attached and placed, cached canvas layers built. */
    get ready() {
      return (app.view?.hooksReady && app.view?.layersReady) ?? false;
    },
    get redraws() {
      return app.redraws.slice();
    },
    /** The route at the lowest threshold is being fetched in the background (refine.ts). */
    get refining() {
      return app.refine.refining;
    },
    /** idle | running | error, the threshold drawn before it, and each refinement that ended. */
    get refine() {
      const r = app.refine;
      return { state: r.state, from: r.from, to: r.to, waitingAt: r.waitingAt, error: r.error, log: r.log.slice() };
    },
    /** Every route fetched: {threshold, target (a position or "all"), nodes, edges, refine}. */
    get fetches() {
      return app.fetchLog.slice();
    },
    /** The comparison drawn (null: none): prompt B, its threshold, heads, and the drawn edges with their colours. */
    get compare() {
      return compareDebug(app);
    },
    get traceId() {
      return app.trace?.trace_id ?? null;
    },
    /** The last estimate shown by the Run button (null: none). */
    get estimate() {
      return app.prompts?.estimate.last ?? null;
    },
    stats: () => ({ ...app.view.stats(), threshold: $view.get().threshold, fetched: app.prepared ? { nodes: app.prepared.nodes.length, edges: app.prepared.edges.length } : null }),
    /** Show a synthetic route graph (no server): layers x tokens, fetched at `threshold`. */
    synth(nLayers = 30, nTokens = 200, threshold = limits.fetchMin, target = -1) {
      const tokens = synthTokens(nTokens);
      const g = synthGraph({ tokens, nLayers, nHeads: 9, target, threshold });
      if (app.file) leaveFile(app);
      app.trace = {
        trace_id: "synthetic",
        model: "synthetic",
        tokens,
        n_layers: nLayers,
        n_heads: 9,
        parallel: false,
        predictions: tokens.map(() => []),
      };
      // no prompt in the URL: a reload does not try to run one
      setView({ shown: "trace", prompt: "", target: g.target.pos!, sel: null });
      cacheRoute(app, g.target.pos!, g);
      app.preds.render(app.trace, null);
      loadGraph(app);
      return { nodes: g.nodes.length, edges: g.edges.length };
    },
    /** The standalone SVG that the SVG export would download. */
    exportSvg: () => (app.prepared ? app.view.exportSvg("routelens").text : null),
    /** Thresholds where prune() (from keepUntil) and the reference walk disagree (none expected). */
    checkPrune(thresholds = [0.01, 0.012, 0.015, 0.02, 0.03, 0.04, 0.05, 0.08, 0.1, 0.2, 0.5, 1]) {
      const p = app.prepared;
      if (!p) return null;
      const bad: number[] = [];
      for (const t of thresholds) {
        const a = prune(p, t);
        const b = pruneWalk(p, t);
        if (a.edgeList.join() !== b.edgeList.join() || a.nodeList.join() !== b.nodeList.join()) bad.push(t);
      }
      return bad;
    },
    setThreshold(t: number) {
      applyThreshold(app, t);
      return app.lastRedrawMs;
    },
    /** Redraw at each threshold in turn; resolves with per-step timings (ms). */
    async benchmark(thresholds = [0.04, 0.01, 0.02, 0.1, 0.01, 0.5, 0.04]) {
      const out: { threshold: number; redrawMs: number; domMs: number; frameMs: number; relayoutMs: number; nodes: number; edges: number }[] = [];
      for (const t of thresholds) {
        const t0 = performance.now();
        applyThreshold(app, t);
        const redrawMs = app.lastRedrawMs;
        const domMs = app.view.lastDomMs;
        await new Promise<void>((r) => requestAnimationFrame(() => setTimeout(r, 0)));
        const frameMs = performance.now() - t0;
        app.lastRelayoutMs = 0;
        await new Promise<void>((r) => setTimeout(r, 400)); // let a compact-columns re-layout happen
        out.push({ threshold: t, redrawMs, domMs, frameMs, relayoutMs: app.lastRelayoutMs, nodes: app.pruned?.nodeList.length ?? 0, edges: app.pruned?.edgeList.length ?? 0 });
      }
      return out;
    },
    /** The foil token id of the view ($view.foil), or null (why/). */
    get foil() {
      return $view.get().foil;
    },
    /** The knockout check shown: its report and curve (null: none), and whether it is running. */
    get verify() {
      const v = app.why?.verify;
      return { report: v?.report ?? null, curve: v?.curve ?? null };
    },
  };
  (window as unknown as { __routelensDebug: typeof hook }).__routelensDebug = hook;
}
