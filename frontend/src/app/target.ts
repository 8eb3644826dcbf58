// The target: the position whose route is drawn, or "all" (every position's route at once).
// A file holds the route to one target only, so it keeps to it.

import { $view, setView, type Target } from "../state";
import { clamp } from "../ui/dom";
import type { App } from "./app";
import { loadGraph, renderRouteLine } from "./route";
import { exitCompare } from "../compare/flow";

export function setTarget(app: App, target: Target): void {
  if (app.cmp) return exitCompare(app, target); // a comparison: back to prompt A's route to it
  if (!app.trace || app.file) return;
  const T = app.trace.tokens.length;
  const t: Target = target === "all" ? "all" : clamp(target, 0, T - 1);
  if (t === $view.get().target && app.prepared) return;
  setView({ target: t, sel: null, head: null, neuron: null, foil: null }); // a foil belongs to its target
  renderRouteLine(app);
  app.inspector.render();
  loadGraph(app);
}

/** ← / →: the previous / next position; from "all", the last / first. */
export function stepTarget(app: App, dir: -1 | 1): void {
  if (!app.trace) return;
  const t = $view.get().target;
  if (t === "all") setTarget(app, dir < 0 ? app.trace.tokens.length - 1 : 0);
  else setTarget(app, t + dir);
}
