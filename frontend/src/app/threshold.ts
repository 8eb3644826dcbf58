// Applying a threshold: prune the fetched route locally and draw it (no request), or wait for the
// finer route when the threshold is below what was fetched. The route is fetched at the threshold
// asked for (drawn at once), then at limits.fetchMin in the background (route.ts, refine.ts); a
// demo server's lowest threshold, when higher, replaces fetchMin once the configuration is read
// (no request below it is ever made).

import { prune } from "../graph/prune";
import { $view } from "../state";
import { clamp } from "../ui/dom";
import type { App } from "./app";
import { queueRelayout } from "./relayout";
import { canRefine, startRefine } from "./route";
import { compareThreshold } from "../compare/flow";

export const limits = { fetchMin: 0.01 };

const HEAVY_CHANGE = 6000; // drawn elements added or removed by one slider step
let drawTimer: number | undefined;

/** The lowest threshold the slider offers: fetchMin (a coarser route is refined), or a file's own. */
export function minTau(app: App): number {
  return app.file ? app.file.graph.threshold : limits.fetchMin;
}

/** The lowest threshold the drawn graph supports: what it was fetched at (or minTau). */
export function floorTau(app: App): number {
  const g = app.prepared?.graph;
  return Math.max(minTau(app), g && Number.isFinite(g.threshold) ? g.threshold : 0);
}

export function setSliderRange(app: App): void {
  app.thresholdCtl.setRange(minTau(app));
}

/** Draw the route at `tau` (`dragging`: the slider is moving; big changes wait for it to rest). */
export function applyThreshold(app: App, tau: number, dragging = false): void {
  if (!Number.isFinite(tau)) return;
  tau = clamp(tau, minTau(app), 1);
  // the store writes the URL after the frame is painted (state.ts): history.replaceState would
  // force the new elements' style to be computed before the paint, inside the redraw
  const kept = $view.get().threshold === tau;
  $view.setKey("threshold", tau); // the controls follow the store
  if (kept) app.thresholdCtl.show(tau); // a typed value out of range: the box shows the clamped one
  if (app.cmp) compareThreshold(app, tau); // a comparison is redone at the new threshold
  const p = app.prepared;
  if (!p) return;
  const t0 = performance.now();
  // below what was fetched: the drawing stays at the fetched threshold (dimmed, the note says
  // so) until the finer route is here, never a graph that misses edges for this threshold
  const floor = floorTau(app);
  const waiting = tau < floor - 1e-9 && canRefine(app, p.graph);
  app.refine.setWaiting(waiting ? tau : null);
  app.graphSection.classList.toggle("awaiting-refine", waiting);
  if (waiting && !app.refine.refining) startRefine(app);
  const at = Math.max(tau, floor);
  if (!(app.pruned?.tau === at && app.prunedFrom === p)) {
    app.pruned = prune(p, at);
    app.prunedFrom = p;
  }
  const pr = app.pruned!;
  if (app.view.pr === pr) return;
  // while the slider is dragged, a change of thousands of elements waits for a pause (the counts
  // update at once); small changes are drawn immediately
  const drawn = app.view.pr && app.view.p === p ? app.view.pr.edgeList.length + app.view.pr.nodeList.length : 0;
  clearTimeout(drawTimer);
  if (dragging && Math.abs(pr.edgeList.length + pr.nodeList.length - drawn) > HEAVY_CHANGE) {
    drawTimer = window.setTimeout(() => applyThreshold(app, $view.get().threshold), 180);
    renderCounts(app);
  } else draw(app, t0);
}

function draw(app: App, t0: number): void {
  app.view.render(app.pruned!);
  app.lastRedrawMs = performance.now() - t0;
  app.redraws.push(app.lastRedrawMs);
  if (app.redraws.length > 100) app.redraws.shift();
  requestAnimationFrame(() => setTimeout(() => (app.lastFrameMs = performance.now() - t0), 0));
  renderCounts(app);
  if ($view.get().sel?.type === "node") app.inspector.refreshConnections();
  if (app.compact) queueRelayout(app, 120);
}

export function renderCounts(app: App): void {
  app.thresholdCtl.renderCounts(app.prepared, app.pruned, { waitingRefine: app.refine.waitingAt !== null, drawPending: !!app.pruned && app.view.pr !== app.pruned });
}
