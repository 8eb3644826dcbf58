// routelens web app: the controller. It owns the state (model, prompt, trace, target,
// threshold, selection), talks to the API, keeps the URL in sync and wires the pieces:
//   top bar (model, prompt, run) -> predictions strip -> graph view -> inspector panels.

import "./styles.css";
import { ApiError, login, onRequest, onUnauthorized, qs, request, requestLog } from "./api";
import type { Config, Facts, Graph, ModelStatus, Selection, TraceResp } from "./types";
import { type Prepared, type Pruned, parseEdgeKey, prepare, prune, pruneWalk, prunedGraph } from "./graph/prune";
import { makeLayout } from "./graph/layout";
import { graphKey } from "./graph/keys";
import { legend } from "./graph/legend";
import { GraphView } from "./graph/view";
import { exportJson, exportPng, exportSvg } from "./graph/export";
import { readUrl, writeUrl, type UrlState } from "./state";
import { bigNumber, bytesNote, clamp, fill, h, icon, num, pct, slug, tokenSpan, tokenText, truncate } from "./ui/dom";
import { askToken } from "./ui/login";
import { type LinkConfirm, type LinkWork, linkConfirmBar, linkWork } from "./ui/linkconfirm";
import { parseNodeId, type PanelCtx } from "./panels/context";
import { connections, tokenPanel } from "./panels/token";
import { headPanel } from "./panels/head";
import { neuronPanel } from "./panels/neuron";
import { synthGraph, synthTokens } from "./synth";
import { parseGraphText, targetPos } from "./graphfile";
import { normaliseLineEnds, promptLines } from "./prompts";
import { canonicalSelection, offlineCtx, offlinePanel } from "./panels/offline";
import { Refinement } from "./refine";
import { EstimateBox, costRows } from "./estimate";

// the route is fetched at the threshold asked for (drawn at once), then at FETCH_MIN in the
// background (refine.ts), and pruned locally above it; a demo server's lowest threshold, when
// higher, replaces it once the configuration is read (no request below it is ever made)
let FETCH_MIN = 0.01;
const SLIDER_MAX = 0.3;
const CUSTOM = "__custom__";
const PROMPTS_KEY = "routelens.prompts";
const SIDE_KEY = "routelens.sideWidth";
const EDGE_WARN = 20000;
const HEAVY_CHANGE = 6000; // drawn elements added or removed by one slider step

class App {
  config!: Config;
  model = "";
  status: ModelStatus | null = null;
  trace: TraceResp | null = null;
  target = -1;
  threshold = 0.04;
  chat = false;
  norm: "l1" | "l2" = "l1";
  sel: Selection | null = null;
  head: number | null = null;
  neuron: number | null = null;
  lensNorm = true;
  prepared: Prepared | null = null;
  pruned: Pruned | null = null;
  compact = localStorage.getItem("routelens.compact") !== "0";
  layoutUsed: Uint8Array | null = null;
  relayoutTimer: number | undefined;
  prunedFrom: Prepared | null = null;
  graphCache = new Map<string, Graph>();
  runSeq = 0;
  graphSeq = 0;
  loadSeq = 0;
  pollTimer: number | undefined;
  retriedTrace = false;
  redraws: number[] = [];
  lastRedrawMs = 0;
  lastFrameMs = 0;
  lastRelayoutMs = 0;
  traceTimings: Record<string, unknown> = {};
  busy = false;
  /** A graph opened from a file (no trace on the server): drawn and pruned locally only. */
  file: { name: string; graph: Graph } | null = null;
  fileSeq = 0;
  /** A link's request waiting for the user's Run or Dismiss (ui/linkconfirm.ts); the URL is kept meanwhile. */
  linkAsk: LinkConfirm | null = null;
  /** The route at FETCH_MIN, fetched in the background after the first drawing (refine.ts). */
  refine = new Refinement(() => this.startRefine());
  /** Every route fetched: for the test hooks. */
  fetchLog: { threshold: number; target: number; nodes: number; edges: number; refine: boolean }[] = [];
  /** The trace's own estimate and measurements (debug panel), when the server sends them. */
  traceCost: Pick<TraceResp, "estimate" | "measured"> = {};
  estimate!: EstimateBox;

  // DOM
  root = document.getElementById("app")!;
  modelSelect!: HTMLSelectElement;
  customBox!: HTMLDivElement;
  customInput!: HTMLInputElement;
  statusPill!: HTMLSpanElement;
  factsEl!: HTMLDivElement;
  normSelect!: HTMLSelectElement;
  promptSelect!: HTMLSelectElement;
  promptInput!: HTMLTextAreaElement;
  promptCount!: HTMLSpanElement;
  addBtn!: HTMLButtonElement;
  removeBtn!: HTMLButtonElement;
  chatBox!: HTMLInputElement;
  runBtn!: HTMLButtonElement;
  bannerSlot!: HTMLDivElement;
  linkSlot!: HTMLDivElement;
  predList!: HTMLDivElement;
  predInfo!: HTMLSpanElement;
  slider!: HTMLInputElement;
  compactBox!: HTMLInputElement;
  thInput!: HTMLInputElement;
  countsEl!: HTMLSpanElement;
  routeInfo!: HTMLDivElement;
  overlay!: HTMLDivElement;
  graphSection!: HTMLElement;
  side!: HTMLElement;
  sideBody!: HTMLDivElement;
  debugEl: HTMLElement | null = null;
  view!: GraphView;
  fileInput!: HTMLInputElement;

  async init(): Promise<void> {
    this.installDebugHook();
    // a server with an access token: the first call it refuses opens the token dialog (one for
    // all the calls refused together); they are all sent again once the browser is logged in
    onUnauthorized((err) => askToken(login, err));
    try {
      this.config = await request<Config>("GET", "api/config");
      FETCH_MIN = Math.max(FETCH_MIN, this.config.min_threshold ?? 0);
    } catch (err) {
      this.config = {
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
      this.build();
      this.showError(err);
      return;
    }
    this.build();
    const u = readUrl();
    this.threshold = clamp(u.threshold ?? this.config.default_threshold ?? 0.04, FETCH_MIN, 1);
    this.chat = !!u.chat;
    this.norm = u.norm ?? "l1";
    this.chatBox.checked = this.chat;
    this.normSelect.value = this.norm;
    this.setThresholdControls(this.threshold);
    this.promptInput.value = u.prompt ?? this.config.prompts[0] ?? "";
    this.onPromptEdit();
    const plainModel = this.config.default_model || this.config.models[0] || "";
    let model = u.model ?? plainModel;
    if (model && !this.config.models.includes(model) && !this.customAllowed()) {
      this.showError(new ApiError(`The model "${model}" from the link is not offered by this server; showing ${this.config.default_model} instead.`, "unknown_model", 0, "URL"));
      model = this.config.default_model;
    }
    const work = linkWork(u, model, plainModel);
    if (work) return this.askLink(work, u, plainModel);
    if (model) this.selectModel(model);
    if (u.prompt) {
      this.head = u.head ?? null;
      this.neuron = u.neuron ?? null;
      await this.run({ target: u.target, sel: u.sel ?? null });
    } else this.syncUrl();
  }

  // ---- a link that asks for work (ui/linkconfirm.ts) -----------------------------------------
  /** Show what the link asks for in the controls and ask; load or run nothing the link wants. */
  askLink(work: LinkWork, u: UrlState, plainModel: string): void {
    this.linkAsk = linkConfirmBar(work, {
      run: () => {
        this.linkAsk = null;
        if (work.loadModel) this.selectModel(work.model);
        if (!work.prompt) return;
        this.head = u.head ?? null;
        this.neuron = u.neuron ?? null;
        this.run({ target: u.target, sel: u.sel ?? null });
      },
      dismiss: () => {
        this.linkAsk = null;
        if (this.model !== plainModel) this.selectModel(plainModel);
        else this.syncUrl();
      },
    });
    this.linkSlot.replaceChildren(this.linkAsk.el);
    if (!work.loadModel) this.selectModel(work.model); // the default model, as a plain visit loads it
    else this.showModel(work.model, { model: work.model, state: "absent" });
  }

  /** The user chose something else (another model, their own Run): the link's question is moot. */
  dropLinkAsk(): void {
    this.linkAsk?.close();
    this.linkAsk = null;
  }

  customAllowed(): boolean {
    return this.config.allow_custom_models && !this.config.demo_mode;
  }

  // ---- building the page ---------------------------------------------------------------------
  build(): void {
    const c = this.config;
    this.fileInput = h("input", { type: "file", accept: ".json,application/json", hidden: true, "data-testid": "open-file-input", "aria-label": "open a route-graph JSON file" });
    this.fileInput.addEventListener("change", () => {
      const f = this.fileInput.files?.[0];
      this.fileInput.value = "";
      if (f) this.openFile(f);
    });
    document.body.classList.toggle("demo", c.demo_mode);

    // model
    this.modelSelect = h("select", { "data-testid": "model-select", id: "model-select", "aria-label": "model" });
    for (const m of c.models) this.modelSelect.append(h("option", { value: m }, m));
    if (this.customAllowed()) this.modelSelect.append(h("option", { value: CUSTOM }, "Other: Hugging Face hub id…"));
    this.modelSelect.addEventListener("change", () => {
      this.dropLinkAsk();
      if (this.modelSelect.value === CUSTOM) {
        this.customBox.hidden = false;
        this.customInput.focus();
      } else {
        this.customBox.hidden = true;
        this.selectModel(this.modelSelect.value);
        this.estimate.schedule();
      }
    });
    this.customInput = h("input", { type: "text", class: "custom-model", "data-testid": "model-custom", placeholder: "e.g. Qwen/Qwen2.5-0.5B", spellcheck: "false" });
    const loadCustom = () => {
      const name = this.customInput.value.trim();
      if (!name) return;
      this.dropLinkAsk();
      this.selectModel(name);
      this.estimate.schedule();
    };
    this.customInput.addEventListener("keydown", (e) => e.key === "Enter" && loadCustom());
    this.customBox = h("div", { class: "custom-box", hidden: true }, this.customInput, h("button", { class: "btn", "data-testid": "model-load", onclick: loadCustom }, "Load"));
    this.statusPill = h("span", { class: "status-pill", "data-testid": "model-status" });
    this.factsEl = h("div", { class: "facts", "data-testid": "model-facts" });
    this.normSelect = h(
      "select",
      { "data-testid": "norm-select", title: "proximity norm of the importances (routes-math.md §3): L1 is the paper's choice" },
      h("option", { value: "l1" }, "L1 proximity"),
      h("option", { value: "l2" }, "L2 proximity"),
    );
    this.normSelect.addEventListener("change", () => {
      this.norm = this.normSelect.value as "l1" | "l2";
      if (this.trace && !this.file) this.run({ target: this.target, sel: this.sel });
      else this.syncUrl();
    });

    // prompt
    this.promptSelect = h("select", { class: "prompt-select", "data-testid": "prompt-select", "aria-label": "prompt list" });
    this.promptSelect.addEventListener("change", () => {
      const v = this.promptSelect.value;
      if (v) {
        this.promptInput.value = v;
        this.onPromptEdit();
        this.estimate.schedule();
      }
    });
    this.promptInput = h("textarea", {
      "data-testid": "prompt-input",
      class: "prompt-input",
      rows: 1,
      spellcheck: "false",
      placeholder: "Type a prompt…  (Ctrl+Enter runs)",
      "aria-label": "prompt",
    });
    // no maxlength: a longer prompt is refused by the server with a message that says so
    this.promptInput.addEventListener("input", () => {
      this.onPromptEdit();
      this.estimate.schedule(); // the user typed: what the run will cost, once typing stops
    });
    this.promptInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.run();
      }
    });
    this.promptCount = h("span", { class: "prompt-count muted small" });
    this.addBtn = h("button", { class: "btn", "data-testid": "add-prompt", title: "keep this prompt in your list (stored in this browser)", onclick: () => this.addPrompt() }, "Add to list");
    this.removeBtn = h("button", { class: "btn subtle", "data-testid": "remove-prompt", title: "remove this prompt from your list", onclick: () => this.removePrompt(), hidden: true }, "Remove");
    const importInput = h("input", { type: "file", "data-testid": "import-input", accept: ".txt,.json,.jsonl,text/plain,application/json", hidden: true });
    importInput.addEventListener("change", () => this.importPrompts(importInput));
    const importBtn = c.allow_loading_dataset_files && !c.demo_mode ? h("button", { class: "btn subtle", title: "add prompts from a .txt (one per line), .json or .jsonl file", onclick: () => importInput.click() }, "Import…") : null;
    this.chatBox = h("input", { type: "checkbox", "data-testid": "chat-toggle" });
    this.chatBox.addEventListener("change", () => {
      this.chat = this.chatBox.checked;
      this.syncUrl();
      this.estimate.schedule();
    });
    this.runBtn = h("button", { class: "btn primary run", "data-testid": "run-button", onclick: () => this.run() }, "Run");
    this.estimate = new EstimateBox(() => (this.linkAsk ? null : { model: this.model || null, prompt: this.promptInput.value, chat: this.chat }));
    this.refreshPromptList();

    const brand = h(
      "div",
      { class: "brand" },
      h("span", { class: "logo", "aria-hidden": "true" }, "◭"),
      h("span", null, "routelens"),
      c.demo_mode ? h("span", { class: "badge" }, "demo") : null,
    );
    const helpBtn = h("button", { class: "icon-btn", title: "keyboard shortcuts", onclick: () => this.toggleHelp() }, "?");
    const debugBtn = c.debug ? h("button", { class: "btn subtle", "data-testid": "debug-toggle", onclick: () => this.toggleDebug() }, "Debug") : null;
    const top = h(
      "header",
      { class: "topbar" },
      h(
        "div",
        { class: "row" },
        brand,
        h("label", { class: "field" }, h("span", { class: "field-label" }, "Model"), this.modelSelect),
        this.customBox,
        this.statusPill,
        this.factsEl,
        h("div", { class: "spacer" }),
        this.normSelect,
        debugBtn,
        helpBtn,
      ),
      h(
        "div",
        { class: "row prompt-row" },
        h("label", { class: "field" }, h("span", { class: "field-label" }, "Prompt"), this.promptSelect),
        h("div", { class: "prompt-wrap" }, this.promptInput, this.promptCount),
        this.addBtn,
        this.removeBtn,
        importBtn,
        importInput,
        h("label", { class: "check", title: "wrap the prompt in the model's chat template (instruct models)" }, this.chatBox, " Chat template"),
        h("div", { class: "run-wrap" }, this.runBtn, this.estimate.el),
      ),
    );

    this.bannerSlot = h("div", { class: "banner-slot" });
    this.linkSlot = h("div", { class: "banner-slot" });

    // predictions strip
    this.predList = h("div", { class: "pred-list", "data-testid": "prediction-list", role: "listbox", "aria-label": "next-token predictions by position" });
    this.predInfo = h("span", { class: "muted small" }, "Run a prompt to see the model's next-token prediction at every position.");
    const preds = h("section", { class: "predictions" }, h("div", { class: "strip-head" }, h("b", null, "Predictions"), this.predInfo), this.predList);

    // graph toolbar
    this.slider = h("input", {
      type: "range",
      "data-testid": "threshold-slider",
      min: String(FETCH_MIN),
      max: String(SLIDER_MAX),
      step: "0.001",
      value: "0.04",
      "aria-label": "threshold",
      title: "edges lighter than this are hidden ([ and ] step it)",
    });
    // while dragging, redraw at most once per frame (a big route can take longer than a frame)
    let pending = false;
    this.slider.addEventListener("input", () => {
      this.thInput.value = String(+Number(this.slider.value).toFixed(4));
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        this.applyThreshold(Number(this.slider.value), true);
      });
    });
    this.slider.addEventListener("change", () => this.applyThreshold(Number(this.slider.value)));
    this.thInput = h("input", { type: "number", class: "th-input", "data-testid": "threshold-input", min: String(FETCH_MIN), max: "1", step: "0.001", "aria-label": "threshold value" });
    this.thInput.addEventListener("change", () => {
      const v = Number(this.thInput.value);
      if (Number.isFinite(v)) this.applyThreshold(v);
    });
    this.countsEl = h("span", { class: "counts muted small", "data-testid": "graph-counts" });
    this.compactBox = h("input", { type: "checkbox", "data-testid": "compact-toggle", checked: this.compact });
    this.compactBox.addEventListener("change", () => this.setCompact(this.compactBox.checked));
    const exportBtn = (fmt: "json" | "svg" | "png", label: string) =>
      h("button", { class: "btn small", "data-testid": "export-button", "data-format": fmt, title: `download the drawn route as ${label}`, onclick: () => this.exportAs(fmt) }, label);
    const toolbar = h(
      "div",
      { class: "graph-toolbar" },
      h("label", { class: "th-field" }, h("span", { class: "field-label" }, "Threshold"), this.slider, this.thInput),
      this.countsEl,
      h("label", { class: "check small", title: "narrow the token columns that the drawn route does not touch" }, this.compactBox, " compact"),
      h("div", { class: "spacer" }),
      legend(),
      h(
        "div",
        { class: "btn-group" },
        h("button", { class: "icon-btn", title: "fit the whole route (F)", onclick: () => this.view.fit() }, icon("fit")),
        h("button", { class: "icon-btn", title: "zoom out (-)", onclick: () => this.view.zoomBy(1 / 1.4) }, "−"),
        h("button", { class: "icon-btn", title: "zoom in (+)", onclick: () => this.view.zoomBy(1.4) }, "+"),
      ),
      h("div", { class: "btn-group" }, h("span", { class: "muted small" }, "Export"), exportBtn("json", "JSON"), exportBtn("svg", "SVG"), exportBtn("png", "PNG")),
      h(
        "button",
        { class: "btn small", "data-testid": "open-file", title: "open a route-graph JSON exported by routelens (JSON export, or `routelens trace ... --out x.json`); you can also drop the file on the graph", onclick: () => this.fileInput.click() },
        "Open…",
      ),
      this.fileInput,
      h("button", { class: "icon-btn", title: "fullscreen", onclick: () => this.fullscreen(this.graphSection) }, icon("fullscreen")),
    );
    this.routeInfo = h("div", { class: "route-info small" });
    this.overlay = h("div", { class: "graph-overlay" });
    // the refinement's note sits at the right end of the route line: over neither the drawing nor
    // the toolbar, and its coming and going moves nothing
    this.graphSection = h("section", { class: "graph-section" }, toolbar, h("div", { class: "route-line" }, this.routeInfo, this.refine.el));
    this.installDrop(this.graphSection);
    this.view = new GraphView(this.graphSection, {
      select: (s) => this.select(s),
      target: (p) => this.setTarget(p),
    });
    this.graphSection.append(this.overlay);
    this.setOverlay("Pick a model and a prompt, then press Run.");

    // side panel
    this.sideBody = h("div", { class: "side-body" });
    const resizer = h("div", { class: "resizer", title: "drag to resize" });
    this.side = h(
      "aside",
      { class: "side" },
      h("div", { class: "side-tools" }, h("button", { class: "icon-btn", title: "fullscreen", onclick: () => this.fullscreen(this.side) }, icon("fullscreen"))),
      this.sideBody,
    );
    const main = h("main", { class: "main" }, this.graphSection, resizer, this.side);
    const savedW = Number(localStorage.getItem(SIDE_KEY));
    if (savedW > 200) document.documentElement.style.setProperty("--side-w", `${savedW}px`);
    resizer.addEventListener("pointerdown", (e) => {
      resizer.setPointerCapture(e.pointerId);
      const move = (ev: PointerEvent) => {
        const w = clamp(window.innerWidth - ev.clientX, 260, window.innerWidth * 0.7);
        document.documentElement.style.setProperty("--side-w", `${w}px`);
        localStorage.setItem(SIDE_KEY, String(Math.round(w)));
      };
      const up = () => {
        resizer.removeEventListener("pointermove", move);
        resizer.removeEventListener("pointerup", up);
      };
      resizer.addEventListener("pointermove", move);
      resizer.addEventListener("pointerup", up);
    });

    this.root.replaceChildren(top, this.linkSlot, this.bannerSlot, preds, main);
    this.renderSide();
    this.renderStatus();
    document.addEventListener("keydown", (e) => this.onKey(e));
    if (c.debug) {
      onRequest(() => this.renderDebug());
    }
  }

  setOverlay(text: string | null, spinner = false): void {
    if (!text) {
      this.overlay.hidden = true;
      return;
    }
    this.overlay.hidden = false;
    this.overlay.replaceChildren(h("div", { class: "overlay-box" }, spinner ? h("span", { class: "spinner" }) : null, text));
  }

  // ---- errors -------------------------------------------------------------------------------
  showError(err: unknown): void {
    if ((err as Error)?.name === "AbortError") return;
    const e = err instanceof ApiError ? err : new ApiError(String((err as Error)?.message ?? err), "client_error", 0, "");
    console.warn("routelens:", e.code, e.message);
    const banner = h(
      "div",
      { class: "error-banner", "data-testid": "error-banner", role: "alert" },
      h("span", { class: "err-icon", "aria-hidden": "true" }, "!"),
      h("div", { class: "err-text" }, h("div", { class: "err-message" }, e.message), h("div", { class: "err-meta muted small" }, [e.code, e.status ? `HTTP ${e.status}` : "", e.request].filter(Boolean).join(" · "))),
      h("button", { class: "icon-btn", title: "dismiss", "aria-label": "dismiss error", onclick: () => banner.remove() }, "×"),
    );
    this.bannerSlot.replaceChildren(banner);
  }

  clearError(): void {
    this.bannerSlot.replaceChildren();
  }

  // ---- models -------------------------------------------------------------------------------
  /** Show `name` as the model (an option is added for a custom one) without loading it. */
  showModel(name: string, status: ModelStatus): void {
    this.model = name;
    if (![...this.modelSelect.options].some((o) => o.value === name)) {
      const opt = h("option", { value: name }, name);
      const customOpt = [...this.modelSelect.options].find((o) => o.value === CUSTOM);
      this.modelSelect.insertBefore(opt, customOpt ?? null);
    }
    this.modelSelect.value = name;
    this.customBox.hidden = true;
    this.status = status;
    this.renderStatus();
  }

  async selectModel(name: string): Promise<void> {
    this.showModel(name, { model: name, state: "loading", stage: "starting", elapsed: 0 });
    this.syncUrl();
    const seq = ++this.loadSeq;
    clearTimeout(this.pollTimer);
    try {
      const st = await request<ModelStatus>("POST", "api/models/load", { model: name });
      if (seq !== this.loadSeq) return;
      this.status = st;
      this.renderStatus();
      if (st.state === "loading") this.poll(seq);
      if (st.state === "error") this.showError(new ApiError(st.message || `could not load ${name}`, "load_failed", 0, "model load"));
    } catch (err) {
      if (seq !== this.loadSeq) return;
      this.status = { model: name, state: "error", message: (err as Error).message };
      this.renderStatus();
      this.showError(err);
    }
  }

  poll(seq: number): void {
    this.pollTimer = window.setTimeout(async () => {
      if (seq !== this.loadSeq) return;
      try {
        const st = await request<ModelStatus>("GET", `api/models/status?${qs({ model: this.model })}`);
        if (seq !== this.loadSeq) return;
        this.status = st;
        this.renderStatus();
        if (st.state === "loading") this.poll(seq);
        else if (st.state === "error") this.showError(new ApiError(st.message || `could not load ${this.model}`, "load_failed", 0, "model load"));
      } catch (err) {
        if (seq !== this.loadSeq) return;
        this.showError(err);
      }
    }, 500);
  }

  renderStatus(): void {
    const st = this.status;
    const pill = this.statusPill;
    pill.className = "status-pill";
    if (!st) {
      pill.textContent = "";
      pill.hidden = true;
      this.factsEl.replaceChildren();
      return;
    }
    pill.hidden = false;
    pill.classList.add(`st-${st.state}`);
    if (st.state === "loading") {
      pill.replaceChildren(h("span", { class: "spinner" }), `${st.stage || "loading"}… ${(st.elapsed ?? 0).toFixed(1)} s`);
      pill.title = "loading the model in the background: download, conversion (first time only), then into memory";
    } else if (st.state === "ready") {
      pill.replaceChildren(h("span", { class: "dot" }), "ready");
      pill.title = `loaded in ${(st.elapsed ?? 0).toFixed(1)} s`;
    } else if (st.state === "error") {
      pill.replaceChildren(h("span", { class: "dot" }), "failed");
      pill.title = st.message ?? "";
    } else {
      pill.replaceChildren(h("span", { class: "dot" }), "not loaded");
    }
    this.renderFacts(st.facts ?? (this.trace?.model === st.model ? this.trace?.facts : null) ?? null);
  }

  renderFacts(f: Facts | null): void {
    if (!f) {
      this.factsEl.replaceChildren();
      return;
    }
    const item = (label: string, value: string | undefined, title?: string) => (value === undefined ? null : h("span", { class: "fact", title: title ?? label }, h("b", null, value), " ", label));
    const heads = f.n_heads !== undefined ? String(f.n_heads) + (f.n_kv_heads && f.n_kv_heads !== f.n_heads ? ` (${f.n_kv_heads} kv)` : "") : undefined;
    fill(
      this.factsEl,
      item("params", f.parameters !== undefined ? bigNumber(f.parameters) : undefined, `${f.parameters?.toLocaleString("en-US")} parameters`),
      item("layers", f.n_layers?.toString()),
      item("heads", heads),
      item("d_model", f.d_model?.toString()),
      item("vocab", f.vocab !== undefined ? f.vocab.toLocaleString("en-US") : undefined),
      f.device ? h("span", { class: "fact tag" }, String(f.device)) : null,
      f.dtype ? h("span", { class: "fact tag" }, String(f.dtype)) : null,
      f.parallel_blocks ? h("span", { class: "fact tag", title: "attention and FFN read the same input: no node after attention" }, "parallel blocks") : null,
    );
    this.factsEl.title = [f.family && `family ${f.family}`, f.model_type && `type ${f.model_type}`, f.head_dim && `head_dim ${f.head_dim}`, f.context_length && `context ${f.context_length}`].filter(Boolean).join(" · ");
  }

  // ---- prompts ------------------------------------------------------------------------------
  userPrompts(): string[] {
    try {
      const v = JSON.parse(localStorage.getItem(PROMPTS_KEY) ?? "[]");
      return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
    } catch {
      return [];
    }
  }

  saveUserPrompts(list: string[]): void {
    try {
      localStorage.setItem(PROMPTS_KEY, JSON.stringify(list.slice(0, 500)));
    } catch {
      this.showError(new ApiError("Could not save the prompt list in this browser (storage full or disabled).", "storage", 0, "localStorage"));
    }
  }

  refreshPromptList(): void {
    const sel = this.promptSelect;
    const opt = (p: string) => h("option", { value: p, title: p }, truncate(p.replace(/\s+/g, " "), 60));
    const mine = this.userPrompts();
    fill(sel, 
      h("option", { value: "" }, "Choose…"),
      this.config.prompts.length ? h("optgroup", { label: "Preloaded" }, this.config.prompts.map(opt)) : null,
      mine.length ? h("optgroup", { label: "Your prompts" }, mine.map(opt)) : null,
    );
    this.onPromptEdit();
  }

  onPromptEdit(): void {
    const v = this.promptInput.value;
    const max = this.config.max_user_string_length;
    this.promptCount.textContent = max && (v.length > max * 0.7 || this.config.demo_mode) ? `${v.length}/${max}` : "";
    this.promptCount.classList.toggle("over", !!max && v.length >= max);
    const inList = [...this.promptSelect.options].some((o) => o.value === v && v);
    this.promptSelect.value = inList ? v : "";
    const mine = this.userPrompts().includes(v);
    this.removeBtn.hidden = !mine;
    this.addBtn.disabled = !v.trim() || mine || this.config.prompts.includes(v);
    // grow up to 4 lines
    this.promptInput.style.height = "auto";
    this.promptInput.style.height = `${Math.min(this.promptInput.scrollHeight + 2, 78)}px`;
  }

  addPrompt(): void {
    const v = this.promptInput.value;
    if (!v.trim()) return;
    const list = this.userPrompts().filter((p) => p !== v);
    list.unshift(v);
    this.saveUserPrompts(list);
    this.refreshPromptList();
  }

  removePrompt(): void {
    const v = this.promptInput.value;
    this.saveUserPrompts(this.userPrompts().filter((p) => p !== v));
    this.refreshPromptList();
  }

  async importPrompts(input: HTMLInputElement): Promise<void> {
    const file = input.files?.[0];
    input.value = "";
    if (!file) return;
    const bytes = await file.arrayBuffer();
    let found: string[] = [];
    const pick = (x: unknown): string | null => (typeof x === "string" ? x : x && typeof x === "object" ? ((x as Record<string, unknown>).prompt ?? (x as Record<string, unknown>).text ?? null) as string | null : null);
    try {
      // the server's reading (prompts.ts): UTF-8 or refused, the byte-order mark dropped, CR / CRLF as LF
      const text = normaliseLineEnds(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      if (/\.json$/i.test(file.name)) {
        const data = JSON.parse(text);
        found = (Array.isArray(data) ? data : data.prompts ?? []).map(pick).filter((x: string | null): x is string => !!x);
      } else if (/\.jsonl$/i.test(file.name)) {
        found = promptLines(text).map((l) => pick(JSON.parse(l))).filter((x): x is string => !!x);
      } else {
        found = promptLines(text);
      }
    } catch (err) {
      this.showError(new ApiError(`Could not read ${file.name}: ${(err as Error).message}. Use a .txt file (one prompt per line), a JSON list, or JSON lines.`, "bad_file", 0, "import"));
      return;
    }
    const max = this.config.max_user_string_length || Infinity;
    const ok = found.filter((p) => p.length <= max);
    const list = this.userPrompts();
    for (const p of ok) if (!list.includes(p)) list.push(p);
    this.saveUserPrompts(list);
    this.refreshPromptList();
    if (ok.length < found.length) this.showError(new ApiError(`${found.length - ok.length} prompt(s) longer than ${max} characters were left out.`, "prompt_too_long", 0, "import"));
  }

  // ---- tracing ------------------------------------------------------------------------------
  async run(restore?: { target?: number; sel?: Selection | null }): Promise<void> {
    this.dropLinkAsk();
    // the model a link showed without loading it: the user's own Run loads it now
    if (this.status?.state === "absent" && this.status.model === this.model) this.selectModel(this.model);
    const prompt = this.promptInput.value;
    const seq = ++this.runSeq;
    if (this.file) this.leaveFile();
    this.refine.cancel(); // the route being refined belongs to the trace this run replaces
    this.clearError();
    this.setBusy(true);
    if (!restore) {
      this.sel = null;
      this.head = null;
      this.neuron = null;
    }
    this.setOverlay(this.status?.state === "loading" ? `Waiting for ${this.model} to load, then running it…` : "Running the model…", true);
    try {
      const tr = await request<TraceResp>("POST", "api/trace", { model: this.model, prompt, chat: this.chat, norm: this.norm });
      if (seq !== this.runSeq) return;
      this.trace = tr;
      this.traceTimings = { ...(tr.timings ?? {}) };
      this.traceCost = { estimate: tr.estimate, measured: tr.measured }; // absent from an older server
      this.graphCache.clear();
      const T = tr.tokens.length;
      const t = restore?.target;
      this.target = t !== undefined && t >= -T && t < T ? (t + T) % T : T - 1;
      this.sel = restore?.sel ?? null;
      if (tr.facts) this.renderFacts(tr.facts);
      if (this.status?.state !== "ready" && tr.model === this.model) {
        this.status = { model: tr.model, state: "ready", stage: "ready", elapsed: this.status?.elapsed ?? 0, facts: tr.facts ?? null };
        this.renderStatus();
      }
      this.renderPredictions();
      this.syncUrl();
      await this.loadGraph();
    } catch (err) {
      if (seq !== this.runSeq) return;
      this.setOverlay(this.trace ? null : "Nothing to show: the run failed (see the message above).");
      this.showError(err);
    } finally {
      if (seq === this.runSeq) this.setBusy(false);
    }
  }

  setBusy(b: boolean): void {
    this.busy = b;
    this.runBtn.disabled = b;
    this.runBtn.classList.toggle("busy", b);
    this.runBtn.textContent = b ? "Running…" : "Run";
  }

  /** The route to the target: drawn at the threshold asked for as soon as it is here, then
   * refined (the route at FETCH_MIN fetched in the background and swapped in, the view kept). */
  async loadGraph(): Promise<void> {
    const tr = this.trace;
    if (!tr) return;
    const seq = ++this.graphSeq;
    this.refine.cancel();
    const key = `${tr.trace_id}|${this.target}`;
    const want = Math.max(this.threshold, FETCH_MIN);
    let g = this.graphCache.get(key);
    if (!g && this.file) return; // a file holds one route only (setTarget keeps to it)
    if (g && this.canRefine(g) && g.threshold > want + 1e-9) g = undefined; // coarser than asked for now
    if (!g) {
      this.setOverlay("Computing the route…", true);
      const t0 = performance.now();
      try {
        g = await request<Graph>("GET", `api/trace/${tr.trace_id}/graph?${qs({ target: this.target, threshold: want })}`);
      } catch (err) {
        if (seq !== this.graphSeq) return;
        if (err instanceof ApiError && err.code === "unknown_trace" && !this.retriedTrace) {
          this.retriedTrace = true; // evicted from the server's cache: trace again, once
          await this.run({ target: this.target, sel: this.sel });
          this.retriedTrace = false;
          return;
        }
        this.setOverlay("The route could not be computed (see the message above).");
        this.showError(err);
        return;
      }
      this.traceTimings.graph_request = +((performance.now() - t0) / 1000).toFixed(3);
      if (seq !== this.graphSeq) return;
      this.logFetch(g, false);
      this.graphCache.set(key, g);
    }
    this.showGraph(g, false);
    this.renderSide();
    if (this.canRefine(g)) this.startRefine();
  }

  /** Draw `g` as the route to the target; `keepView`: the finer route swapped in (zoom, pan,
   * selection and the open panel stay). */
  showGraph(g: Graph, keepView: boolean): void {
    const tr = this.trace!;
    const t1 = performance.now();
    if (!keepView) this.renderRouteInfo(); // before measuring the drawing area: this line takes room
    this.prepared = prepare(g, tr.n_layers, tr.parallel);
    const { w, h: hh } = this.view.size();
    this.pruned = prune(this.prepared, Math.max(this.threshold, this.floorTau()));
    this.prunedFrom = this.prepared;
    const layout = makeLayout(this.prepared, tr.tokens.length, w, hh, this.compact ? this.pruned.node : undefined);
    this.layoutUsed = layout.used;
    this.view.setGraph(this.prepared, layout, tr.tokens, tr.predictions, this.target, keepView);
    this.traceTimings[keepView ? "refine_layout_ms" : "layout_ms"] = +(performance.now() - t1).toFixed(1);
    if (!keepView) this.setOverlay(null);
    this.applyThreshold(this.threshold);
    this.view.setSelection(this.sel);
    this.renderDebug();
  }

  /** A live route fetched above FETCH_MIN: the finer one can be fetched. */
  canRefine(g: Graph): boolean {
    return !this.file && !!this.trace && this.trace.trace_id !== "synthetic" && g.threshold > FETCH_MIN + 1e-9;
  }

  /** Fetch the route at FETCH_MIN in the background; a newer run, target or file cancels it. */
  startRefine(): void {
    const tr = this.trace;
    const p = this.prepared;
    if (!tr || !p || !this.canRefine(p.graph)) return;
    const seq = this.graphSeq;
    const target = this.target;
    const key = `${tr.trace_id}|${target}`;
    const t0 = performance.now();
    this.refine.run(
      p.graph.threshold,
      FETCH_MIN,
      (signal) => request<Graph>("GET", `api/trace/${tr.trace_id}/graph?${qs({ target, threshold: FETCH_MIN })}`, undefined, signal),
      (g) => {
        if (seq !== this.graphSeq || this.trace !== tr || this.target !== target || this.file) return;
        this.traceTimings.refine_request = +((performance.now() - t0) / 1000).toFixed(3);
        this.logFetch(g, true);
        this.graphCache.set(key, g);
        this.showGraph(g, true);
        if (this.sel?.type === "node") this.refreshConnections();
      },
    );
    this.graphSection.classList.toggle("awaiting-refine", this.refine.waitingAt !== null);
  }

  logFetch(g: Graph, refine: boolean): void {
    this.fetchLog.push({ threshold: g.threshold, target: this.target, nodes: g.nodes.length, edges: g.edges.length, refine });
    if (this.fetchLog.length > 50) this.fetchLog.shift();
  }

  renderPredictions(): void {
    const tr = this.trace;
    if (!tr) return;
    const frag = document.createDocumentFragment();
    tr.tokens.forEach((tok, i) => {
      const preds = tr.predictions[i] ?? [];
      const top = preds[0];
      const chip = h(
        "div",
        {
          class: "chip" + (i === this.target ? " active" : ""),
          "data-testid": "prediction",
          "data-pos": i,
          "data-token": tok,
          "data-bytes": tr.token_bytes?.[i],
          role: "option",
          "aria-selected": i === this.target ? "true" : "false",
          tabindex: 0,
          title: `position ${i}: ${JSON.stringify(tok)}${bytesNote(tr.token_bytes?.[i])}\nnext-token predictions:\n` + preds.map((p) => `  ${JSON.stringify(p.token)}  ${pct(p.prob)}${bytesNote(p.bytes)}`).join("\n") + "\nclick: show the route to this position",
          onclick: () => this.setTarget(i),
          onkeydown: (e: Event) => (e as KeyboardEvent).key === "Enter" && this.setTarget(i),
        },
        h("div", { class: "chip-tok" }, h("span", { class: "chip-pos" }, String(i)), tokenSpan(truncate(tok, 18), "tok", false, tr.token_bytes?.[i])),
        top ? h("div", { class: "chip-pred" }, tokenSpan(truncate(top.token, 14), "tok pred", false, top.bytes), h("span", { class: "chip-prob", style: `--p:${top.prob}` }, pct(top.prob))) : h("div", { class: "chip-pred muted" }, "–"),
      );
      frag.append(chip);
    });
    this.predList.replaceChildren(frag);
    this.predInfo.textContent = this.file
      ? `${tr.tokens.length} tokens · opened from ${this.file.name}: it holds the route to position ${this.target} only, and no predictions (they need the live model) · Run a prompt to go back to live traces`
      : `${tr.tokens.length} tokens · each chip: the token and the model's top next-token prediction after it · click one to route it (←/→)`;
    this.markTarget();
  }

  markTarget(): void {
    for (const el of Array.from(this.predList.children)) {
      const on = Number((el as HTMLElement).dataset.pos) === this.target;
      el.classList.toggle("active", on);
      el.setAttribute("aria-selected", on ? "true" : "false");
      if (on) (el as HTMLElement).scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  renderRouteInfo(): void {
    const tr = this.trace;
    if (!tr) {
      fill(this.routeInfo, );
      return;
    }
    if (this.file) {
      const g = this.file.graph;
      const pred = typeof g.target.token === "string" ? g.target.token : null;
      fill(
        this.routeInfo,
        h("span", { class: "muted" }, "Route to "),
        tokenSpan(tr.tokens[this.target] ?? "", "tok", false, tr.token_bytes?.[this.target]),
        h("span", { class: "muted" }, ` (position ${this.target})`),
        pred !== null ? h("span", null, h("span", { class: "muted" }, " → predicts "), tokenSpan(pred, "tok pred")) : null,
        h("span", { class: "muted" }, ` · ${tr.model}${g.norm ? ` · ${String(g.norm).toUpperCase()}` : ""} · `),
        h("span", { class: "file-badge", "data-testid": "file-badge", title: `drawn from the file, pruned locally; the file holds edges down to threshold ${g.threshold}` }, `from file ${truncate(this.file.name, 48)}`),
        h("span", { class: "muted" }, " · top tokens, heads and neurons need the live model"),
      );
      return;
    }
    const p = tr.predictions[this.target]?.[0];
    fill(this.routeInfo, 
      h("span", { class: "muted" }, "Route to "),
      tokenSpan(tr.tokens[this.target] ?? "", "tok", false, tr.token_bytes?.[this.target]),
      h("span", { class: "muted" }, ` (position ${this.target})`),
      p ? h("span", null, h("span", { class: "muted" }, " → predicts "), tokenSpan(p.token, "tok pred", false, p.bytes), h("span", { class: "muted" }, ` ${pct(p.prob)}`)) : null,
      h("span", { class: "muted" }, ` · ${tr.model} · ${this.norm.toUpperCase()}${this.chat ? " · chat" : ""}`),
    );
  }

  setTarget(pos: number): void {
    if (!this.trace || this.file) return; // a file holds the route to one position only
    const T = this.trace.tokens.length;
    pos = clamp(pos, 0, T - 1);
    if (pos === this.target && this.prepared) return;
    this.target = pos;
    this.sel = null;
    this.head = this.neuron = null;
    this.markTarget();
    this.renderRouteInfo();
    this.renderSide();
    this.syncUrl();
    this.loadGraph();
  }

  // ---- threshold ----------------------------------------------------------------------------
  /** The lowest threshold the slider offers: FETCH_MIN (a coarser route is refined), or a file's own. */
  minTau(): number {
    return this.file ? this.file.graph.threshold : FETCH_MIN;
  }

  /** The lowest threshold the drawn graph supports: what it was fetched at (or minTau). */
  floorTau(): number {
    const g = this.prepared?.graph;
    return Math.max(this.minTau(), g && Number.isFinite(g.threshold) ? g.threshold : 0);
  }

  setSliderRange(): void {
    const min = this.minTau();
    this.slider.min = String(min);
    this.slider.max = String(min < SLIDER_MAX ? SLIDER_MAX : 1);
    this.thInput.min = String(min);
  }

  setThresholdControls(tau: number): void {
    this.slider.value = String(clamp(tau, this.minTau(), Number(this.slider.max)));
    this.thInput.value = String(+tau.toFixed(4));
  }

  applyThreshold(tau: number, dragging = false): void {
    if (!Number.isFinite(tau)) return;
    tau = clamp(tau, this.minTau(), 1);
    this.threshold = tau;
    this.setThresholdControls(tau);
    const p = this.prepared;
    if (p) {
      const t0 = performance.now();
      // below what was fetched: the drawing stays at the fetched threshold (dimmed, the note says
      // so) until the finer route is here, never a graph that misses edges for this threshold
      const floor = this.floorTau();
      const waiting = tau < floor - 1e-9 && this.canRefine(p.graph);
      this.refine.setWaiting(waiting ? tau : null);
      this.graphSection.classList.toggle("awaiting-refine", waiting);
      if (waiting && !this.refine.refining) this.startRefine();
      const at = Math.max(tau, floor);
      if (!(this.pruned?.tau === at && this.prunedFrom === p)) {
        this.pruned = prune(p, at);
        this.prunedFrom = p;
      }
      const pr = this.pruned!;
      if (this.view.pr !== pr) {
        // while the slider is dragged, a change of thousands of elements waits for a pause
        // (the counts update at once); small changes are drawn immediately
        const drawn = this.view.pr && this.view.p === p ? this.view.pr.edgeList.length + this.view.pr.nodeList.length : 0;
        clearTimeout(this.drawTimer);
        if (dragging && Math.abs(pr.edgeList.length + pr.nodeList.length - drawn) > HEAVY_CHANGE) {
          this.drawTimer = window.setTimeout(() => this.applyThreshold(this.threshold), 180);
          this.renderCounts();
        } else this.draw(t0);
      }
    }
    // the URL is written after the frame is painted: history.replaceState would force the
    // new elements' style to be computed before the paint, inside the redraw
    this.syncUrl(true);
  }
  drawTimer: number | undefined;

  private draw(t0: number): void {
    this.view.render(this.pruned!);
    this.lastRedrawMs = performance.now() - t0;
    this.redraws.push(this.lastRedrawMs);
    if (this.redraws.length > 100) this.redraws.shift();
    requestAnimationFrame(() => setTimeout(() => (this.lastFrameMs = performance.now() - t0), 0));
    this.renderCounts();
    if (this.sel?.type === "node") this.refreshConnections();
    if (this.compact) this.queueRelayout(120);
  }

  /** Compact columns: once the threshold rests, narrow the token columns the drawn route does
   * not touch (and widen those it touches now). */
  queueRelayout(delay: number): void {
    clearTimeout(this.relayoutTimer);
    this.relayoutTimer = window.setTimeout(() => this.relayout(), delay);
  }

  relayout(force = false): void {
    const p = this.prepared;
    const pr = this.pruned;
    const tr = this.trace;
    if (!p || !pr || !tr) return;
    const T = tr.tokens.length;
    const used = new Uint8Array(T);
    for (const n of this.compact ? pr.nodeList : p.nodes.map((x) => x.idx)) used[p.nodes[n].pos] = 1;
    const old = this.layoutUsed;
    if (!force && old && old.length === T) {
      let changed = 0;
      for (let i = 0; i < T; i++) if (old[i] !== used[i]) changed++;
      if (changed === 0) return;
      // re-placing a big drawing costs about as much as drawing it again: only when many
      // columns change, and never automatically past 15k elements (the "compact" box forces it)
      const drawn = pr.edgeList.length * 2 + pr.nodeList.length;
      if (drawn > 15000 || (drawn > 5000 && changed < 0.25 * T)) return;
    }
    const { w, h: hh } = this.view.size();
    const t0 = performance.now();
    const layout = makeLayout(p, T, w, hh, this.compact ? pr.node : undefined);
    this.layoutUsed = layout.used;
    this.view.relayout(layout);
    this.lastRelayoutMs = performance.now() - t0;
  }

  setCompact(on: boolean): void {
    this.compact = on;
    localStorage.setItem("routelens.compact", on ? "1" : "0");
    this.compactBox.checked = on;
    this.relayout(true);
  }

  renderCounts(): void {
    const p = this.prepared;
    const pr = this.pruned;
    if (!p || !pr) {
      this.countsEl.textContent = "";
      return;
    }
    const hiddenE = p.edges.length - pr.edgeList.length;
    const hiddenN = p.nodes.length - pr.nodeList.length;
    fill(this.countsEl, 
      h("b", null, pr.nodeList.length.toLocaleString("en-US")),
      " nodes · ",
      h("b", null, pr.edgeList.length.toLocaleString("en-US")),
      " edges",
      hiddenE > 0 || hiddenN > 0
        ? h("span", { class: "hidden-count", title: `the route was fetched at threshold ${p.graph.threshold}; lower the slider to draw what is hidden` }, ` · hidden below threshold: ${hiddenN.toLocaleString("en-US")} nodes, ${hiddenE.toLocaleString("en-US")} edges`)
        : null,
      this.refine.waitingAt !== null ? h("span", { class: "pending" }, ` · drawn at ${num(p.graph.threshold, 4)} until the finer route is here`) : null,
      this.view.pr !== pr ? h("span", { class: "pending" }, " · drawing when the slider rests…") : null,
      pr.edgeList.length > EDGE_WARN ? h("span", { class: "warn" }, ` · ${pr.edgeList.length.toLocaleString("en-US")} edges drawn: panning may be slow, raise the threshold`) : null,
    );
  }

  // ---- selection & panels -------------------------------------------------------------------
  select(sel: Selection | null): void {
    sel = canonicalSelection(sel);
    const same = JSON.stringify(sel) === JSON.stringify(this.sel);
    if (same) return;
    this.sel = sel;
    this.head = null;
    this.neuron = null;
    this.view.setSelection(sel);
    this.renderSide();
    this.syncUrl();
  }

  panelCtx(): PanelCtx | null {
    const tr = this.trace;
    if (!tr) return null;
    return {
      traceId: tr.trace_id,
      tokens: tr.tokens,
      nLayers: tr.n_layers,
      nHeads: tr.n_heads,
      parallel: !!tr.parallel,
      get: <T>(path: string) =>
        request<T>("GET", path).catch((err) => {
          this.showError(err);
          throw err;
        }),
      close: () => this.select(null),
      selectEdge: (key) => this.select({ type: "edge", key }),
      selectNode: (id) => this.select({ type: "node", id }),
      hover: (ref) => this.view.hoverExternal(ref),
      graph: () => (this.prepared && this.pruned ? { p: this.prepared, pr: this.pruned } : null),
      head: this.head,
      setHead: (hd) => {
        this.head = hd;
        this.syncUrl();
      },
      neuron: this.neuron,
      setNeuron: (n) => {
        this.neuron = n;
        this.syncUrl();
      },
      lensNorm: this.lensNorm,
      setLensNorm: (on) => (this.lensNorm = on),
    };
  }

  renderSide(): void {
    if (this.file) {
      this.renderFileSide();
      return;
    }
    const ctx = this.panelCtx();
    const sel = this.sel;
    if (!ctx || !sel) {
      this.sideBody.replaceChildren(this.hint());
      return;
    }
    if (sel.type === "node") {
      const ref = parseNodeId(sel.id);
      if (!ref || ref.pos >= ctx.tokens.length) {
        this.sideBody.replaceChildren(this.hint(`Unknown node ${sel.id}.`));
        return;
      }
      this.sideBody.replaceChildren(ref.kind === "ffn" ? neuronPanel(ctx, ref) : tokenPanel(ctx, ref));
      return;
    }
    const e = parseEdgeKey(sel.key);
    const s = e && parseNodeId(e.source);
    const t = e && parseNodeId(e.target);
    if (!e || !s || !t || e.kind !== "attn") {
      this.sideBody.replaceChildren(this.hint(`Unknown edge ${sel.key}.`));
      return;
    }
    this.sideBody.replaceChildren(headPanel(ctx, { layer: t.layer, source: s.pos, target: t.pos }));
  }

  refreshConnections(): void {
    // the token panel's "In the route" list depends on the threshold: rebuild it cheaply
    clearTimeout(this.connTimer);
    this.connTimer = window.setTimeout(() => {
      const old = this.sideBody.querySelector<HTMLElement>(".conn-section");
      const ctx = this.panelCtx();
      const ref = old?.dataset.node ? parseNodeId(old.dataset.node) : null;
      if (!old || !ctx || !ref) return;
      const fresh = connections(ctx, ref);
      if (fresh) old.replaceWith(fresh);
    }, 150);
  }
  connTimer: number | undefined;

  hint(extra?: string): HTMLElement {
    return h(
      "div",
      { class: "hint" },
      extra ? h("p", { class: "inline-error" }, extra) : null,
      h("h2", null, "Inspector"),
      this.file
        ? h(
            "div",
            { class: "offline-note", "data-testid": "offline-note" },
            h("b", null, `Opened from ${this.file.name}. `),
            "Hover, zoom and the threshold slider work on the file's graph; a click shows what the file holds about a node or an edge. Top tokens, attention patterns and neurons need the live model: run the prompt to see them.",
          )
        : null,
      this.trace
        ? h(
            "ul",
            null,
            h("li", null, h("b", null, "Click a node"), " (circle) to see its top tokens in the logit lens and what its block promoted or suppressed."),
            h("li", null, h("b", null, "Click an attention edge"), " (blue) for the heads that carry it, their attention pattern and contribution map."),
            h("li", null, h("b", null, "Click an FFN node"), " (pink square) for its top neurons."),
            h("li", null, "Hover a node to light its whole route; hold ", h("kbd", null, "Shift"), " to freeze the hover."),
            h("li", null, "Drag to pan, scroll to zoom, ", h("kbd", null, "F"), " fits, ", h("kbd", null, "←"), h("kbd", null, "→"), " change the target, ", h("kbd", null, "["), h("kbd", null, "]"), " step the threshold."),
          )
        : h("p", { class: "muted" }, "Choose a model and a prompt and press Run. The route graph shows how information flows from the input tokens (bottom) to the prediction (top)."),
    );
  }

  // ---- a graph opened from a file --------------------------------------------------------------
  /** Read a route-graph JSON file (routelens.graph/2 or /1) and draw it without a trace. */
  async openFile(file: File): Promise<void> {
    const seq = ++this.fileSeq;
    let g: Graph;
    try {
      const text = await file.text();
      if (seq !== this.fileSeq) return;
      g = parseGraphText(text, file.name || "The file");
    } catch (err) {
      if (seq !== this.fileSeq) return;
      const code = (err as { code?: string }).code ?? "bad_file";
      this.showError(new ApiError(err instanceof Error ? err.message : String(err), code, 0, `open ${file.name}`));
      return;
    }
    this.showFileGraph(file.name || "graph.json", g);
  }

  showFileGraph(name: string, g: Graph): void {
    ++this.runSeq; // a run or a route fetch still in flight no longer lands
    ++this.graphSeq;
    this.refine.cancel();
    this.graphSection.classList.remove("awaiting-refine");
    this.setBusy(false);
    this.clearError();
    this.file = { name, graph: g };
    const T = g.tokens.length;
    this.trace = {
      trace_id: `file:${name}`,
      model: String(g.model.name ?? "unknown model"),
      tokens: g.tokens,
      token_bytes: g.token_bytes,
      n_layers: g.model.n_layers,
      n_heads: g.model.n_heads,
      predictions: g.tokens.map(() => []),
    };
    this.traceTimings = {};
    this.graphCache.clear();
    const tp = targetPos(g);
    this.target = tp >= 0 && tp < T ? tp : T - 1;
    this.sel = null;
    this.head = this.neuron = null;
    this.threshold = g.threshold; // the file's own threshold: what it was exported at
    this.setSliderRange();
    this.setThresholdControls(this.threshold);
    this.graphCache.set(`${this.trace.trace_id}|${this.target}`, g);
    this.renderPredictions();
    this.syncUrl();
    this.loadGraph();
  }

  /** Back to live traces (a prompt is run, or the synthetic debug graph is shown). */
  leaveFile(): void {
    this.file = null;
    this.refine.cancel();
    this.trace = null;
    this.prepared = this.pruned = this.prunedFrom = null;
    this.graphCache.clear();
    this.sel = null;
    this.view.clear();
    this.setSliderRange();
    this.threshold = clamp(this.threshold, FETCH_MIN, 1);
    this.setThresholdControls(this.threshold);
    this.predList.replaceChildren();
    this.predInfo.textContent = "";
    this.renderRouteInfo();
    this.renderCounts();
    this.renderSide();
  }

  renderFileSide(): void {
    const file = this.file!;
    const sel = this.sel;
    if (!sel || !this.trace) {
      this.sideBody.replaceChildren(this.hint());
      return;
    }
    const ctx = offlineCtx({
      tokens: this.trace.tokens,
      nLayers: this.trace.n_layers,
      nHeads: this.trace.n_heads,
      parallel: this.prepared?.parallel ?? false,
      graph: () => (this.prepared && this.pruned ? { p: this.prepared, pr: this.pruned } : null),
      select: (s) => this.select(s),
      hover: (ref) => this.view.hoverExternal(ref),
    });
    const panel = offlinePanel(ctx, sel, `the file ${file.name}`, "Run the prompt with its model to see them.");
    this.sideBody.replaceChildren(panel ?? this.hint(sel.type === "node" ? `Unknown node ${sel.id}.` : `Unknown edge ${sel.key}.`));
  }

  /** Dropping a file on the graph opens it. */
  installDrop(el: HTMLElement): void {
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
      if (f) this.openFile(f);
    });
  }

  // ---- export -------------------------------------------------------------------------------
  fileBase(): string {
    const what = this.file ? this.file.name.replace(/\.json$/i, "") : this.promptInput.value;
    return `routelens_${slug(this.trace?.model ?? this.model, 24)}_${slug(what, 28)}_pos${this.target}_t${+this.threshold.toFixed(3)}`;
  }

  async exportAs(fmt: "json" | "svg" | "png"): Promise<void> {
    if (!this.prepared || !this.pruned || !this.trace) {
      this.showError(new ApiError("Nothing to export yet: run a prompt first.", "no_graph", 0, "export"));
      return;
    }
    try {
      if (fmt === "json") {
        exportJson(prunedGraph(this.prepared, this.pruned), this.fileBase() + ".json");
        return;
      }
      const tok = this.trace.tokens[this.target] ?? "";
      const pred = this.trace.predictions[this.target]?.[0];
      const title = `routelens · ${this.trace.model} · route to ‘${truncate(tokenText(tok), 20)}’ (pos ${this.target})${pred ? ` → ‘${truncate(tokenText(pred.token), 20)}’ ${pct(pred.prob)}` : ""} · threshold ${num(this.threshold)} · ${this.pruned.nodeList.length} nodes, ${this.pruned.edgeList.length} edges`;
      const svgDoc = this.view.exportSvg(title);
      if (fmt === "svg") exportSvg(svgDoc.text, this.fileBase() + ".svg");
      else await exportPng(svgDoc.text, svgDoc.width, svgDoc.height, this.fileBase() + ".png");
    } catch (err) {
      this.showError(new ApiError(`Export failed: ${(err as Error).message}`, "export_failed", 0, "export"));
    }
  }

  fullscreen(el: HTMLElement): void {
    if (document.fullscreenElement) document.exitFullscreen();
    else el.requestFullscreen?.().catch(() => {});
  }

  // ---- URL ----------------------------------------------------------------------------------
  syncUrl(debounce = false): void {
    if (this.linkAsk) return; // the link's URL stays until the user chose: a reload asks again
    writeUrl(
      {
        model: this.model,
        // a graph from a file is not in the URL: a reload does not bring it back
        prompt: this.trace && !this.file ? this.promptInput.value : undefined,
        chat: this.chat,
        norm: this.norm,
        target: this.trace && !this.file ? this.target : undefined,
        threshold: this.file ? undefined : this.threshold,
        sel: this.file ? null : this.sel,
        head: this.head,
        neuron: this.neuron,
      },
      debounce,
    );
  }

  // ---- keyboard -----------------------------------------------------------------------------
  onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) {
      if (e.key === "Escape") t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    switch (e.key) {
      case "ArrowLeft":
      case "ArrowRight":
        if (this.trace) {
          e.preventDefault();
          this.setTarget(this.target + (e.key === "ArrowLeft" ? -1 : 1));
        }
        break;
      case "ArrowUp":
      case "ArrowDown":
        if (this.moveSelection(e.key === "ArrowUp" ? 1 : -1)) e.preventDefault();
        break;
      case "?":
        this.toggleHelp();
        break;
      default:
        graphKey(e.key, {
          view: this.view,
          threshold: () => this.threshold,
          setThreshold: (t) => this.applyThreshold(t),
          clearSelection: () => this.select(null),
        });
    }
  }

  /** Up / down: the next node of the drawn route in the same column. */
  moveSelection(dir: 1 | -1): boolean {
    if (this.sel?.type !== "node" || !this.prepared || !this.pruned) return false;
    const p = this.prepared;
    const cur = p.byId.get(this.sel.id);
    if (cur === undefined) return false;
    const level = (i: number) => {
      const n = p.nodes[i];
      if (n.kind === "embed") return -1;
      return n.layer * 3 + (n.kind === "attn" ? 0 : n.kind === "ffn" ? 1 : 2);
    };
    const pos = p.nodes[cur].pos;
    const col = this.pruned.nodeList.filter((i) => p.nodes[i].pos === pos).sort((a, b) => level(a) - level(b));
    const k = col.indexOf(cur);
    const next = col[k + dir];
    if (next === undefined) return false;
    this.select({ type: "node", id: p.nodes[next].id });
    return true;
  }

  toggleHelp(): void {
    const existing = document.querySelector(".help-pop");
    if (existing) {
      existing.remove();
      return;
    }
    const rows: [string, string][] = [
      ["← →", "previous / next target position"],
      ["↑ ↓", "move the selected node up / down its column"],
      ["[ ]", "lower / raise the threshold"],
      ["F", "fit the whole route"],
      ["+ −", "zoom"],
      ["Shift (hover)", "freeze the hover highlight"],
      ["Esc", "clear the selection"],
      ["Ctrl+Enter", "run the prompt"],
    ];
    const pop = h(
      "div",
      { class: "help-pop", role: "dialog" },
      h("h3", null, "Keyboard"),
      h("table", null, rows.map(([k, v]) => h("tr", null, h("td", null, h("kbd", null, k)), h("td", null, v)))),
      h("p", { class: "muted small" }, "Edge width and opacity grow with importance. Layers go bottom (embeddings) to top (the prediction); each layer has a row after attention and a row after the FFN."),
      h("button", { class: "btn small", onclick: () => pop.remove() }, "Close"),
    );
    document.body.append(pop);
  }

  // ---- debug --------------------------------------------------------------------------------
  toggleDebug(): void {
    if (this.debugEl) {
      this.debugEl.remove();
      this.debugEl = null;
      return;
    }
    this.debugEl = h("aside", { class: "debug", "data-testid": "debug-panel" });
    document.body.append(this.debugEl);
    this.renderDebug();
    const tick = async () => {
      if (!this.debugEl) return;
      try {
        const d = await request<Record<string, unknown>>("GET", "api/debug");
        this.serverDebug = d;
        this.renderDebug();
      } catch {
        /* optional endpoint */
      }
      if (this.debugEl) setTimeout(tick, 4000);
    };
    tick();
  }
  serverDebug: Record<string, unknown> | null = null;

  renderDebug(): void {
    const el = this.debugEl;
    if (!el) return;
    const stats = this.view.stats();
    const cost = costRows(this.traceCost);
    const mem = (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory;
    const kv = (o: Record<string, unknown>) => h("table", { class: "kv" }, Object.entries(o).map(([k, v]) => h("tr", null, h("td", null, k), h("td", null, typeof v === "number" ? String(+v.toFixed(4)) : typeof v === "object" ? JSON.stringify(v) : String(v)))));
    fill(el, 
      h("div", { class: "debug-head" }, h("b", null, "Debug"), h("button", { class: "icon-btn", onclick: () => this.toggleDebug() }, "×")),
      h("h4", null, "Trace timings (s)"),
      kv(this.traceTimings),
      cost ? h("h4", null, "Trace cost: estimated / measured") : null,
      cost,
      h("h4", null, "Drawing"),
      kv({
        "redraw ms (prune + DOM)": +this.lastRedrawMs.toFixed(2),
        "frame ms (to next paint)": +this.lastFrameMs.toFixed(1),
        "drawn nodes": stats.nodes,
        "drawn edges": stats.edges,
        "SVG elements": stats.dom,
        "JS heap MB": mem ? +(mem.usedJSHeapSize / 2 ** 20).toFixed(1) : "n/a",
      }),
      this.serverDebug ? h("h4", null, "Server") : null,
      this.serverDebug ? kv(this.serverDebug) : null,
      h("h4", null, "Requests"),
      h(
        "table",
        { class: "reqs" },
        requestLog
          .slice(-14)
          .reverse()
          .map((r) => h("tr", { class: r.status >= 400 || r.status === 0 ? "bad" : "" }, h("td", null, r.method), h("td", { class: "path", title: r.path }, truncate(r.path, 48)), h("td", null, String(r.status || "ERR")), h("td", null, `${r.ms.toFixed(0)} ms`), h("td", null, r.bytes > 1e5 ? `${(r.bytes / 1e6).toFixed(2)} MB` : `${(r.bytes / 1e3).toFixed(1)} kB`))),
      ),
    );
  }

  /** window.__routelensDebug: redraw timings, and a synthetic big graph to measure them. */
  installDebugHook(): void {
    const app = this;
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
      /** The route at FETCH_MIN is being fetched in the background (refine.ts). */
      get refining() {
        return app.refine.refining;
      },
      /** idle | running | error, the threshold drawn before it, and each refinement that ended. */
      get refine() {
        const r = app.refine;
        return { state: r.state, from: r.from, to: r.to, waitingAt: r.waitingAt, error: r.error, log: r.log.slice() };
      },
      /** Every route fetched: {threshold, target, nodes, edges, refine}. */
      get fetches() {
        return app.fetchLog.slice();
      },
      get traceId() {
        return app.trace?.trace_id ?? null;
      },
      /** The last estimate shown by the Run button (null: none). */
      get estimate() {
        return app.estimate.last;
      },
      stats: () => ({ ...app.view.stats(), threshold: app.threshold, fetched: app.prepared ? { nodes: app.prepared.nodes.length, edges: app.prepared.edges.length } : null }),
      /** Show a synthetic route graph (no server): layers x tokens, fetched at `threshold`. */
      synth(nLayers = 30, nTokens = 200, threshold = FETCH_MIN, target = -1) {
        const tokens = synthTokens(nTokens);
        const g = synthGraph({ tokens, nLayers, nHeads: 9, target, threshold });
        if (app.file) app.leaveFile();
        app.trace = {
          trace_id: "synthetic",
          model: "synthetic",
          tokens,
          n_layers: nLayers,
          n_heads: 9,
          parallel: false,
          predictions: tokens.map(() => []),
        };
        app.target = g.target.pos!;
        app.sel = null;
        app.graphCache.set(`synthetic|${app.target}`, g);
        app.renderPredictions();
        app.loadGraph();
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
        app.applyThreshold(t);
        return app.lastRedrawMs;
      },
      /** Redraw at each threshold in turn; resolves with per-step timings (ms). */
      async benchmark(thresholds = [0.04, 0.01, 0.02, 0.1, 0.01, 0.5, 0.04]) {
        const out: { threshold: number; redrawMs: number; domMs: number; frameMs: number; relayoutMs: number; nodes: number; edges: number }[] = [];
        for (const t of thresholds) {
          const t0 = performance.now();
          app.applyThreshold(t);
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
    };
    (window as unknown as { __routelensDebug: typeof hook }).__routelensDebug = hook;
  }
}

new App().init();
