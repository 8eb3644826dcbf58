// Running the prompt: the trace on the server (the model's predictions at every position), then
// the route to the target. `restore` keeps a target and selection (a reload, the norm changed,
// the trace evicted from the server's cache); a plain Run starts from the last position.

import { request } from "../api";
import { $view, setView, type Target } from "../state";
import type { Selection, TraceResp } from "../types";
import type { App } from "./app";
import { leaveFile } from "./file";
import { loadGraph } from "./route";
import { firstTarget, genAsk, genBody, genView } from "../gen/flow";
import { afterRun, dropCompare } from "../compare/flow";

export async function run(app: App, restore?: { target?: Target; sel?: Selection | null }): Promise<void> {
  app.dropLinkAsk();
  const model = $view.get().model;
  const st = app.models.status;
  // the model a link showed without loading it: the user's own Run loads it now
  if (st?.state === "absent" && st.model === model) app.models.load(model);
  const prompt = app.prompts.text;
  const seq = ++app.runSeq;
  if (app.file) leaveFile(app);
  dropCompare(app); // a comparison belongs to the trace this run replaces
  app.refine.cancel(); // the route being refined belongs to the trace this run replaces
  app.banner.clear();
  setBusy(app, true);
  if (!restore) setView({ sel: null, head: null, neuron: null, foil: null });
  app.overlay.set(app.models.status?.state === "loading" ? `Waiting for ${model} to load, then running it…` : "Running the model…", true);
  try {
    const { chat, norm } = $view.get();
    const ask = genAsk(app);
    const tr = await request<TraceResp>("POST", "api/trace", { model, prompt, chat, norm, ...genBody(ask) });
    if (seq !== app.runSeq) return;
    app.trace = tr;
    app.traceTimings = { ...(tr.timings ?? {}) };
    app.traceCost = { estimate: tr.estimate, measured: tr.measured }; // absent from an older server
    app.graphCache.clear();
    const T = tr.tokens.length;
    const t = restore?.target;
    const target: Target = t === "all" ? "all" : t !== undefined && t >= -T && t < T ? (t + T) % T : firstTarget(tr);
    if (tr.facts) app.models.renderFacts(tr.facts);
    const now = app.models.status;
    if (now?.state !== "ready" && tr.model === model) {
      app.models.setStatus({ model: tr.model, state: "ready", stage: "ready", elapsed: now?.elapsed ?? 0, facts: tr.facts ?? null });
    }
    // one store change: the URL gets the prompt, the target and the selection at once
    setView({ shown: "trace", prompt, target, sel: restore?.sel ?? null, ...genView(ask), compare: "" });
    app.preds.render(tr, null);
    app.stepper.render(tr.generation);
    await loadGraph(app);
    await afterRun(app, seq);
  } catch (err) {
    if (seq !== app.runSeq) return;
    app.overlay.set(app.trace ? null : "Nothing to show: the run failed (see the message above).");
    app.banner.show(err);
  } finally {
    if (seq === app.runSeq) setBusy(app, false);
  }
}

export function setBusy(app: App, b: boolean): void {
  app.busy = b;
  app.prompts.setBusy(b);
}
