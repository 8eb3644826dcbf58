// Exports of the drawn route: the JSON (routelens.graph/2, pruned as drawn), a standalone SVG and
// a PNG; file names say the model, prompt or file, target ("posall": every position) and threshold.

import { ApiError } from "../api";
import { exportJson, exportPng, exportSvg } from "../graph/export";
import { prunedGraph } from "../graph/prune";
import { $view } from "../state";
import { num, pct, slug, tokenText, truncate } from "../ui/dom";
import type { App } from "./app";

export function fileBase(app: App): string {
  const v = $view.get();
  const what = app.file ? app.file.name.replace(/\.json$/i, "") : app.prompts.text;
  return `routelens_${slug(app.trace?.model ?? v.model, 24)}_${slug(what, 28)}_pos${v.target}_t${+v.threshold.toFixed(3)}`;
}

/** The SVG's title: what is drawn, in words. */
export function exportTitle(app: App): string {
  const tr = app.trace!;
  const pr = app.pruned!;
  const { target, threshold } = $view.get();
  const counts = `threshold ${num(threshold)} · ${pr.nodeList.length} nodes, ${pr.edgeList.length} edges`;
  if (app.cmp) return `routelens · ${tr.model} · two prompts' routes compared: A ‘${truncate($view.get().prompt, 40)}’, B ‘${truncate(app.cmp.prompt, 40)}’ · ${counts}`;
  if (target === "all") return `routelens · ${tr.model} · route to every position (${tr.tokens.length} tokens) · ${counts}`;
  const tok = tr.tokens[target] ?? "";
  const pred = tr.predictions[target]?.[0];
  const foil = app.why?.foilToken();
  if (foil) return `routelens · ${tr.model} · route to ‘${truncate(tokenText(tok), 20)}’ (pos ${target}): why ‘${truncate(tokenText(pred?.token ?? ""), 20)}’ rather than ‘${truncate(tokenText(foil), 20)}’ · ${counts}`;
  return `routelens · ${tr.model} · route to ‘${truncate(tokenText(tok), 20)}’ (pos ${target})${pred ? ` → ‘${truncate(tokenText(pred.token), 20)}’ ${pct(pred.prob)}` : ""} · ${counts}`;
}

export async function exportAs(app: App, fmt: "json" | "svg" | "png"): Promise<void> {
  if (!app.prepared || !app.pruned || !app.trace) {
    app.banner.show(new ApiError("Nothing to export yet: run a prompt first.", "no_graph", 0, "export"));
    return;
  }
  try {
    if (fmt === "json") {
      exportJson(prunedGraph(app.prepared, app.pruned), fileBase(app) + ".json");
      return;
    }
    const svgDoc = app.view.exportSvg(exportTitle(app));
    if (fmt === "svg") exportSvg(svgDoc.text, fileBase(app) + ".svg");
    else await exportPng(svgDoc.text, svgDoc.width, svgDoc.height, fileBase(app) + ".png");
  } catch (err) {
    app.banner.show(new ApiError(`Export failed: ${(err as Error).message}`, "export_failed", 0, "export"));
  }
}
