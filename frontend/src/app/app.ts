// The web app's shared runtime: what is not in the view store (state.ts) — the config, the trace
// or file shown, the fetched and pruned route, caches, timings — and the parts of the page. The
// flows that change it live in their own modules (run.ts, route.ts, target.ts, threshold.ts,
// relayout.ts, file.ts, selection.ts, export.ts); init() starts the page.

import { ApiError, login, onUnauthorized, request } from "../api";
import type { Config, Graph, TraceResp } from "../types";
import type { Prepared, Pruned } from "../graph/prune";
import type { GraphView } from "../graph/view";
import { holdUrl, readUrl, setView, syncUrl } from "../state";
import { clamp } from "../ui/dom";
import { askToken } from "../ui/login";
import { type LinkConfirm, linkWork } from "../ui/linkconfirm";
import type { Banner, Overlay } from "../ui/notices";
import { Refinement } from "../refine";
import type { ModelPicker } from "../controls/model";
import type { PromptBar } from "../controls/prompt";
import type { PredictionsStrip } from "../controls/predictions";
import type { ThresholdControl } from "../controls/threshold";
import type { RouteLine } from "../controls/routeline";
import type { Inspector } from "../panels/inspector";
import { askLink } from "./link";
import { buildPage } from "./page";
import { installDebugHook } from "./debughook";
import { run } from "./run";
import { startRefine } from "./route";
import { limits } from "./threshold";
import type { Why } from "../why/why";
import type { GenerateOptions } from "../gen/options";
import type { Stepper } from "../gen/stepper";
import { installGen } from "../gen/flow";
import { installCompare } from "../compare/flow";
import type { Comparison } from "../compare/flow";
import { installDataset, openDataset } from "../dataset/flow";

const OFFLINE_CONFIG: Config = {
  demo_mode: true,
  debug: false,
  default_model: "",
  models: [],
  allow_custom_models: false,
  allow_loading_dataset_files: false,
  max_user_string_length: 2000,
  prompts: [],
  default_threshold: 0.04,
};

export class App {
  config: Config = OFFLINE_CONFIG;
  trace: TraceResp | null = null;
  /** A graph opened from a file (no trace on the server): drawn and pruned locally only. */
  file: { name: string; graph: Graph } | null = null;
  prepared: Prepared | null = null;
  pruned: Pruned | null = null;
  prunedFrom: Prepared | null = null;
  layoutUsed: Uint8Array | null = null;
  compact = localStorage.getItem("routelens.compact") !== "0";
  lensNorm = true;
  /** Routes fetched, by `${trace_id}|${target}`. */
  graphCache = new Map<string, Graph>();
  runSeq = 0;
  graphSeq = 0;
  fileSeq = 0;
  retriedTrace = false;
  busy = false;
  /** A link's request waiting for the user's Run or Dismiss (ui/linkconfirm.ts); the URL is kept meanwhile. */
  linkAsk: LinkConfirm | null = null;
  /** The route at limits.fetchMin, fetched in the background after the first drawing (refine.ts). */
  refine = new Refinement(() => startRefine(this));
  // measurements, for the debug panel and the test hook
  redraws: number[] = [];
  lastRedrawMs = 0;
  lastFrameMs = 0;
  lastRelayoutMs = 0;
  traceTimings: Record<string, unknown> = {};
  /** The trace's own estimate and measurements (debug panel), when the server sends them. */
  traceCost: Pick<TraceResp, "estimate" | "measured"> = {};
  /** Every route fetched: for the test hooks. */
  fetchLog: { threshold: number; target: number | "all"; nodes: number; edges: number; refine: boolean; foil?: number | null }[] = [];

  // the parts of the page (page.ts builds them)
  root = document.getElementById("app")!;
  banner!: Banner;
  overlay!: Overlay;
  linkSlot!: HTMLDivElement;
  models!: ModelPicker;
  prompts!: PromptBar;
  preds!: PredictionsStrip;
  thresholdCtl!: ThresholdControl;
  routeLine!: RouteLine;
  inspector!: Inspector;
  graphSection!: HTMLElement;
  view!: GraphView;
  renderDebug: () => void = () => {};
  /** Asking why: the foil, direct logit attribution and the knockout check (why/why.ts). */
  why?: Why;
  // generation (gen/) and the comparison of two prompts (compare/)
  genOpts!: GenerateOptions;
  stepper!: Stepper;
  /** The comparison drawn (null: the single route); app.trace is prompt A's meanwhile. */
  cmp: Comparison | null = null;
  /** A comparison the URL asked for, opened once its prompt A's trace is shown. */
  cmpPending = "";

  customAllowed(): boolean {
    return this.config.allow_custom_models && !this.config.demo_mode;
  }

  /** The user chose something else (another model, their own Run): the link's question is moot. */
  dropLinkAsk(): void {
    this.linkAsk?.close();
    this.linkAsk = null;
    holdUrl(false);
  }

  async init(): Promise<void> {
    installDebugHook(this);
    // a server with an access token: the first call it refuses opens the token dialog (one for
    // all the calls refused together); they are all sent again once the browser is logged in
    onUnauthorized((err) => askToken(login, err));
    try {
      this.config = await request<Config>("GET", "api/config");
      limits.fetchMin = Math.max(limits.fetchMin, this.config.min_threshold ?? 0);
    } catch (err) {
      buildPage(this);
      this.banner.show(err);
      return;
    }
    buildPage(this);
    installGen(this);
    installCompare(this);
    const datasets = installDataset(this);
    const u = readUrl();
    if (u.dataset) datasets.then(() => openDataset(this, u.dataset)); // reading an analysis asks for no work
    setView({
      threshold: clamp(u.threshold ?? this.config.default_threshold ?? 0.04, limits.fetchMin, 1),
      chat: !!u.chat,
      norm: u.norm ?? "l1",
    });
    this.prompts.text = u.prompt ?? this.config.prompts[0] ?? "";
    const plainModel = this.config.default_model || this.config.models[0] || "";
    let model = u.model ?? plainModel;
    if (model && !this.config.models.includes(model) && !this.customAllowed()) {
      this.banner.show(new ApiError(`The model "${model}" from the link is not offered by this server; showing ${this.config.default_model} instead.`, "unknown_model", 0, "URL"));
      model = this.config.default_model;
    }
    const work = linkWork(u, model, plainModel);
    if (work) return askLink(this, work, u, plainModel);
    holdUrl(false);
    if (model) this.models.load(model);
    if (u.prompt) {
      setView({ head: u.head ?? null, neuron: u.neuron ?? null, foil: u.foil ?? null });
      this.cmpPending = u.compare ?? "";
      await run(this, { target: u.target, sel: u.sel ?? null });
    } else syncUrl();
  }
}
