// The dataset view's place in the app: the "Dataset" button in the top bar (when the server shows
// analyses, GET /api/analyses), opening and closing the view ($view.dataset, the URL's dataset=),
// and a prompt of the view opened as a route: the analysis's model, the prompt as it was analysed
// (no chat template, its norm, no generation), the target at the position whose route the
// analysis counted, and the head's panel on the route's edge that it carries most.

import { ApiError, request } from "../api";
import type { App } from "../app/app";
import { run } from "../app/run";
import { $view, setView } from "../state";
import { h } from "../ui/dom";
import type { Selection } from "../types";
import type { AnalysisResp, AnalysisSummary, HeadPrompt } from "./types";
import { DatasetView } from "./view";

let view: DatasetView | null = null;
let button: HTMLButtonElement | null = null;

/** The button and the view; resolves once the list of analyses is known (none: no button). */
export async function installDataset(app: App): Promise<void> {
  view = new DatasetView({
    close: () => closeDataset(app),
    openPrompt: (a, p, head) => openPrompt(app, a, p, head),
    shown: (name) => {
      if ($view.get().dataset && $view.get().dataset !== name) setView({ dataset: name });
    },
  });
  button = h("button", { class: "btn subtle", "data-testid": "dataset-open", hidden: true, title: "what a whole dataset's routes have in common: heads, labels, prompts", onclick: () => openDataset(app) }, "Dataset");
  app.root.querySelector(".topbar .row .spacer")?.after(button);
  app.root.append(view.el);
  let list: AnalysisSummary[] = [];
  try {
    list = await request<AnalysisSummary[]>("GET", "api/analyses");
  } catch {
    list = []; // an older server: no dataset view
  }
  view.setList(list);
  button.hidden = list.length === 0;
}

/** Open the view on analysis `name` (the one shown before, else the first readable one). */
export function openDataset(app: App, name?: string): void {
  if (!view || !view.list.length) return;
  const known = view.list.find((a) => a.name === name && !a.error);
  if (name && !known) app.banner.show(new ApiError(`This server shows no dataset analysis named "${name}"; showing another.`, "unknown_analysis", 0, "URL"));
  const pick = known?.name ?? view.current?.name ?? view.list.find((a) => !a.error)?.name ?? view.list[0].name;
  setView({ dataset: pick });
  app.root.classList.add("dataset-open");
  view.el.hidden = false;
  button?.classList.add("is-on");
  if (view.current?.name !== pick || view.el.dataset.state === "error") view.show(pick);
}

/** Back to the route view. */
export function closeDataset(app: App): void {
  if (!view) return;
  view.el.hidden = true;
  app.root.classList.remove("dataset-open");
  button?.classList.remove("is-on");
  if ($view.get().dataset) setView({ dataset: "" });
}

async function openPrompt(app: App, a: AnalysisResp, p: HeadPrompt, head: { layer: number; head: number }): Promise<void> {
  const spec = a.meta.spec;
  const model = spec.model;
  if (!app.config.models.includes(model) && !app.customAllowed()) {
    app.banner.show(new ApiError(`The analysis was made with "${model}", which this server does not offer; add it to the server's models to trace its prompts here.`, "unknown_model", 0, "dataset"));
    return;
  }
  closeDataset(app);
  app.dropLinkAsk();
  if ($view.get().model !== model || app.models.status?.state === "error") app.models.load(model);
  app.prompts.text = p.text;
  app.genOpts?.set({ generate: 0 });
  setView({ chat: false, norm: spec.norm === 2 ? "l2" : "l1", sel: null, head: null, neuron: null, foil: null, compare: "" });
  const seq = app.runSeq + 1;
  await run(app, { target: p.pos, sel: null });
  if (app.runSeq !== seq || !app.trace || $view.get().target !== p.pos) return;
  showHead(app, head.layer, head.head);
}

/** The head's panel on the drawn route's attention edge that this head carries most (the analysis
 * counted a head's share of every attention edge of the route); nothing when it carries none. */
function showHead(app: App, layer: number, head: number): void {
  const into = (id: string) => id.startsWith(app.trace?.parallel ? `x:${layer + 1}:` : `a:${layer}:`);
  let best: { source: string; target: string } | null = null;
  let most = 0;
  const p = app.prepared;
  const shown = app.pruned ? app.pruned.edgeList.map((i) => p!.edges[i]) : (p?.graph.edges ?? []);
  for (const e of shown) {
    const w = e.kind === "attn" && into(e.target) ? (e.heads?.[String(head)] ?? 0) : 0;
    if (w > most) {
      most = w;
      best = e;
    }
  }
  if (!best) return;
  const sel: Selection = { type: "edge", key: `attn|${best.source}|${best.target}` };
  setView({ sel, head, neuron: null });
  app.view.setSelection(sel);
  app.inspector.render();
}
