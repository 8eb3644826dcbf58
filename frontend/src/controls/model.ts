// The model picker: the configured models (plus a free hub id where the server allows it), the
// loading status pill (polled while the model loads in the background) and the model's facts.

import { ApiError, qs, request } from "../api";
import { $view } from "../state";
import type { Config, Facts, ModelStatus } from "../types";
import { bigNumber, fill, h } from "../ui/dom";

const CUSTOM = "__custom__";

export interface ModelPickerHooks {
  config: Config;
  customAllowed: boolean;
  /** The user chose a model (before it loads): a link's question is moot. */
  choosing(): void;
  /** The user's model is loading: what a run would cost changed. */
  chosen(): void;
  /** The facts a trace of `model` brought, when the status has none. */
  traceFacts(model: string): Facts | null;
  showError(err: unknown): void;
}

export class ModelPicker {
  readonly select: HTMLSelectElement;
  readonly customBox: HTMLDivElement;
  readonly pill: HTMLSpanElement;
  readonly facts: HTMLDivElement;
  status: ModelStatus | null = null;
  private customInput: HTMLInputElement;
  private loadSeq = 0;
  private pollTimer: number | undefined;

  constructor(private o: ModelPickerHooks) {
    this.select = h("select", { "data-testid": "model-select", id: "model-select", "aria-label": "model" });
    for (const m of o.config.models) this.select.append(h("option", { value: m }, m));
    if (o.customAllowed) this.select.append(h("option", { value: CUSTOM }, "Other: Hugging Face hub id…"));
    this.select.addEventListener("change", () => {
      o.choosing();
      if (this.select.value === CUSTOM) {
        this.customBox.hidden = false;
        this.customInput.focus();
      } else {
        this.customBox.hidden = true;
        this.load(this.select.value);
        o.chosen();
      }
    });
    this.customInput = h("input", { type: "text", class: "custom-model", "data-testid": "model-custom", placeholder: "e.g. Qwen/Qwen2.5-0.5B", spellcheck: "false" });
    const loadCustom = () => {
      const name = this.customInput.value.trim();
      if (!name) return;
      o.choosing();
      this.load(name);
      o.chosen();
    };
    this.customInput.addEventListener("keydown", (e) => e.key === "Enter" && loadCustom());
    this.customBox = h("div", { class: "custom-box", hidden: true }, this.customInput, h("button", { class: "btn", "data-testid": "model-load", onclick: loadCustom }, "Load"));
    this.pill = h("span", { class: "status-pill", "data-testid": "model-status" });
    this.facts = h("div", { class: "facts", "data-testid": "model-facts" });
    this.renderStatus();
  }

  /** Show `name` as the model (an option is added for a custom one) without loading it. */
  show(name: string, status: ModelStatus): void {
    if (![...this.select.options].some((o) => o.value === name)) {
      const opt = h("option", { value: name }, name);
      const customOpt = [...this.select.options].find((o) => o.value === CUSTOM);
      this.select.insertBefore(opt, customOpt ?? null);
    }
    this.select.value = name;
    this.customBox.hidden = true;
    this.status = status;
    $view.setKey("model", name);
    this.renderStatus();
  }

  /** Load `name` on the server (in the background there) and follow its progress. */
  async load(name: string): Promise<void> {
    this.show(name, { model: name, state: "loading", stage: "starting", elapsed: 0 });
    const seq = ++this.loadSeq;
    clearTimeout(this.pollTimer);
    try {
      const st = await request<ModelStatus>("POST", "api/models/load", { model: name });
      if (seq !== this.loadSeq) return;
      this.setStatus(st);
      if (st.state === "loading") this.poll(seq);
      if (st.state === "error") this.o.showError(new ApiError(st.message || `could not load ${name}`, "load_failed", 0, "model load"));
    } catch (err) {
      if (seq !== this.loadSeq) return;
      this.setStatus({ model: name, state: "error", message: (err as Error).message });
      this.o.showError(err);
    }
  }

  private poll(seq: number): void {
    this.pollTimer = window.setTimeout(async () => {
      if (seq !== this.loadSeq) return;
      const model = $view.get().model;
      try {
        const st = await request<ModelStatus>("GET", `api/models/status?${qs({ model })}`);
        if (seq !== this.loadSeq) return;
        this.setStatus(st);
        if (st.state === "loading") this.poll(seq);
        else if (st.state === "error") this.o.showError(new ApiError(st.message || `could not load ${model}`, "load_failed", 0, "model load"));
      } catch (err) {
        if (seq !== this.loadSeq) return;
        this.o.showError(err);
      }
    }, 500);
  }

  setStatus(st: ModelStatus | null): void {
    this.status = st;
    this.renderStatus();
  }

  private renderStatus(): void {
    const st = this.status;
    const pill = this.pill;
    pill.className = "status-pill";
    if (!st) {
      pill.textContent = "";
      pill.hidden = true;
      this.facts.replaceChildren();
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
    this.renderFacts(st.facts ?? this.o.traceFacts(st.model));
  }

  renderFacts(f: Facts | null): void {
    if (!f) {
      this.facts.replaceChildren();
      return;
    }
    const item = (label: string, value: string | undefined, title?: string) => (value === undefined ? null : h("span", { class: "fact", title: title ?? label }, h("b", null, value), " ", label));
    const heads = f.n_heads !== undefined ? String(f.n_heads) + (f.n_kv_heads && f.n_kv_heads !== f.n_heads ? ` (${f.n_kv_heads} kv)` : "") : undefined;
    fill(
      this.facts,
      item("params", f.parameters !== undefined ? bigNumber(f.parameters) : undefined, `${f.parameters?.toLocaleString("en-US")} parameters`),
      item("layers", f.n_layers?.toString()),
      item("heads", heads),
      item("d_model", f.d_model?.toString()),
      item("vocab", f.vocab !== undefined ? f.vocab.toLocaleString("en-US") : undefined),
      f.device ? h("span", { class: "fact tag" }, String(f.device)) : null,
      f.dtype ? h("span", { class: "fact tag" }, String(f.dtype)) : null,
      f.parallel_blocks ? h("span", { class: "fact tag", title: "attention and FFN read the same input: no node after attention" }, "parallel blocks") : null,
    );
    this.facts.title = [f.family && `family ${f.family}`, f.model_type && `type ${f.model_type}`, f.head_dim && `head_dim ${f.head_dim}`, f.context_length && `context ${f.context_length}`].filter(Boolean).join(" · ");
  }
}
