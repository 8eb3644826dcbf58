// A graph opened from a file (Open… or dropped on the graph): drawn and pruned locally, with no
// trace on the server; a Run (or the synthetic debug graph) goes back to live traces.

import { ApiError } from "../api";
import { fileTarget, parseGraphText } from "../graphfile";
import { $view, setView } from "../state";
import type { Graph } from "../types";
import type { App } from "./app";
import { cacheRoute, loadGraph, renderRouteLine } from "./route";
import { setBusy } from "./run";
import { renderCounts, setSliderRange } from "./threshold";
import { clamp } from "../ui/dom";
import { limits } from "./threshold";

/** Read a route-graph JSON file (routelens.graph/2 or /1) and draw it without a trace. */
export async function openFile(app: App, file: File): Promise<void> {
  const seq = ++app.fileSeq;
  let g: Graph;
  try {
    const text = await file.text();
    if (seq !== app.fileSeq) return;
    g = parseGraphText(text, file.name || "The file");
  } catch (err) {
    if (seq !== app.fileSeq) return;
    const code = (err as { code?: string }).code ?? "bad_file";
    app.banner.show(new ApiError(err instanceof Error ? err.message : String(err), code, 0, `open ${file.name}`));
    return;
  }
  showFileGraph(app, file.name || "graph.json", g);
}

export function showFileGraph(app: App, name: string, g: Graph): void {
  ++app.runSeq; // a run or a route fetch still in flight no longer lands
  ++app.graphSeq;
  app.refine.cancel();
  app.graphSection.classList.remove("awaiting-refine");
  setBusy(app, false);
  app.banner.clear();
  app.file = { name, graph: g };
  app.trace = {
    trace_id: `file:${name}`,
    model: String(g.model.name ?? "unknown model"),
    tokens: g.tokens,
    token_bytes: g.token_bytes,
    n_layers: g.model.n_layers,
    n_heads: g.model.n_heads,
    predictions: g.tokens.map(() => []),
  };
  app.traceTimings = {};
  app.graphCache.clear();
  const target = fileTarget(g);
  // the file's own threshold: what it was exported at
  setView({ shown: "file", target, sel: null, head: null, neuron: null, threshold: g.threshold });
  setSliderRange(app);
  cacheRoute(app, target, g);
  app.preds.render(app.trace, name);
  loadGraph(app);
}

/** Back to live traces (a prompt is run, or the synthetic debug graph is shown). */
export function leaveFile(app: App): void {
  app.file = null;
  app.refine.cancel();
  app.trace = null;
  app.prepared = app.pruned = app.prunedFrom = null;
  app.graphCache.clear();
  app.view.clear();
  setView({ shown: "none", sel: null, threshold: clamp($view.get().threshold, limits.fetchMin, 1) });
  setSliderRange(app);
  app.preds.clear();
  renderRouteLine(app);
  renderCounts(app);
  app.inspector.render();
}

/** Dropping a file on the graph opens it. */
export function installDrop(app: App, el: HTMLElement): void {
  let depth = 0;
  const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes("Files");
  el.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    el.classList.add("drop-over");
  });
  el.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
  });
  el.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) el.classList.remove("drop-over");
  });
  el.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    el.classList.remove("drop-over");
    const f = e.dataTransfer?.files?.[0];
    if (f) openFile(app, f);
  });
}
