// Generation in the web app: the Generate option beside Run (options.ts) asks POST /api/trace to
// generate tokens after the prompt; the trace then covers prompt and continuation, the step
// control (stepper.ts) lists the generated tokens, and a step's route is the route from the
// position that predicted it, toward that token (`/graph?target=<pos>&token_id=<id>`). The graph
// marks the generated columns (GraphView.tail). ←/→ move the target, so they walk the steps too.

import { readUrl, type Target } from "../state";
import type { TraceResp } from "../types";
import type { App } from "../app/app";
import { run } from "../app/run";
import { setTarget } from "../app/target";
import { type GenAsk, GenerateOptions } from "./options";
import { Stepper } from "./stepper";

const DEFAULT_MAX = 64; // an older server's limit (it does not say its own)

/** Build the Generate option and the step control, placed beside Run and under the predictions. */
export function installGen(app: App): void {
  const max = app.config.max_generate_tokens ?? DEFAULT_MAX;
  app.genOpts = new GenerateOptions(max, () => run(app));
  app.stepper = new Stepper((pos) => setTarget(app, pos));
  if (max > 0) app.prompts.runBtn.parentElement?.before(app.genOpts.el);
  app.preds.el.after(app.stepper.el);
  const u = readUrl();
  app.genOpts.set({ generate: u.gen ?? 0, sample: !!u.sample, seed: u.seed ?? 0 });
}

/** What the next Run asks for. */
export function genAsk(app: App): GenAsk {
  return app.genOpts ? app.genOpts.ask() : { generate: 0, sample: false, seed: 0 };
}

/** The fields of POST /api/trace for `a` (none for a plain trace). */
export function genBody(a: GenAsk): Record<string, number | boolean> {
  return a.generate > 0 ? { generate: a.generate, sample: a.sample, seed: a.seed } : {};
}

/** The view store's keys for `a`. */
export function genView(a: GenAsk): { gen: number; sample: boolean; seed: number } {
  return { gen: a.generate, sample: a.sample, seed: a.sample ? a.seed : 0 };
}

/** A plain run's first target: the first generated step's position, else the last position. */
export function firstTarget(tr: TraceResp): number {
  return tr.generation?.steps[0]?.pos ?? tr.tokens.length - 1;
}

/** The token a route to `target` is drawn toward: the generated token of the step predicted there. */
export function stepTokenId(tr: TraceResp | null, target: Target): number | undefined {
  if (!tr?.generation || target === "all") return undefined;
  return tr.generation.steps.find((s) => s.pos === target)?.token_id;
}

/** Before a route of `tr` is drawn: its generated columns are marked, and the step control shows
 * only for a trace with a generation (not for a file's graph). */
export function showGeneration(app: App, tr: TraceResp): void {
  app.view.tail = tailOf(tr);
  if (app.stepper) app.stepper.el.hidden = !tr.generation?.steps.length;
}

/** The first generated column of a trace (-1: nothing generated). */
export function tailOf(tr: TraceResp | null): number {
  const g = tr?.generation;
  return g && g.steps.length ? g.prompt_length : -1;
}
