// The dataset view: one analysis of a whole dataset (docs/viewer.md "Dataset view"). Its picker,
// a label selector (all prompts or one label) and a measure switch (mean importance per route, or
// the share of routes a head lies on) over the layers x heads heatmap; beside it, the heads that
// attend to the previous token or merge a word's pieces, and the components whose importance in
// one label differs most from the rest. A head (a cell or a list item) shows the prompts where it
// mattered most; a prompt opens as a route (flow.ts).

import { qs, request } from "../api";
import { layerName } from "../layers";
import { fill, h } from "../ui/dom";
import { fmt, heatmap, legend } from "./heatmap";
import type { AnalysisResp, AnalysisSummary, HeadPrompt, HeadPromptsResp, HeadScore, LabelDifference, Measure } from "./types";

export interface DatasetHooks {
  close(): void;
  /** Open `p` as a route (the analysis's model, the prompt, the target at its position). */
  openPrompt(a: AnalysisResp, p: HeadPrompt, head: { layer: number; head: number }): void;
  /** The analysis shown changed (the URL follows). */
  shown(name: string): void;
}

type Head = { layer: number; head: number };

const ALL = "all";
const WHAT: Record<Measure, string> = { mean: "mean importance per route", frequency: "share of routes the head lies on" };

export class DatasetView {
  readonly el = h("section", { class: "dataset-view", "data-testid": "dataset-view", hidden: true });
  list: AnalysisSummary[] = [];
  current: AnalysisResp | null = null;
  label: string | null = null; // null: all prompts
  measure: Measure = "mean";
  head: Head | null = null;
  private pick = h("select", { "data-testid": "dataset-pick", "aria-label": "analysis" });
  private labelSel = h("select", { "data-testid": "dataset-label", "aria-label": "label" });
  private measureSel = h("select", { "data-testid": "dataset-measure", "aria-label": "measure" }, h("option", { value: "mean" }, "Mean importance"), h("option", { value: "frequency" }, "Frequency on routes"));
  private info = h("div", { class: "ds-info muted small", "data-testid": "dataset-info" });
  private map = h("div", { class: "ds-map" });
  private headBox = h("div", { class: "ds-head", "data-testid": "dataset-head" });
  private findings = h("div", { class: "ds-findings" });
  private cache = new Map<string, Promise<AnalysisResp>>();
  private seq = 0;
  private headSeq = 0;

  constructor(private o: DatasetHooks) {
    this.pick.addEventListener("change", () => this.show(this.pick.value));
    this.labelSel.addEventListener("change", () => {
      this.label = this.labelSel.value === ALL ? null : this.labelSel.value.slice(2);
      this.renderMap();
    });
    this.measureSel.addEventListener("change", () => {
      this.measure = this.measureSel.value as Measure;
      this.renderMap();
    });
    const close = h("button", { class: "btn subtle", "data-testid": "dataset-close", title: "back to the route view", onclick: () => o.close() }, "Back to the route");
    const field = (name: string, el: HTMLElement) => h("label", { class: "field" }, h("span", { class: "field-label" }, name), el);
    this.el.append(
      h("div", { class: "ds-bar" }, h("b", null, "Dataset analysis"), field("Analysis", this.pick), field("Label", this.labelSel), field("Measure", this.measureSel), h("div", { class: "spacer" }), close),
      this.info,
      h("div", { class: "ds-body" }, this.map, h("div", { class: "ds-side" }, this.headBox, this.findings)),
    );
  }

  setList(list: AnalysisSummary[]): void {
    this.list = list;
    fill(this.pick, ...list.map((a) => h("option", { value: a.name, disabled: !!a.error, title: a.error ?? "" }, a.error ? `${a.name} (cannot be read)` : a.name)));
  }

  /** Show analysis `name` (fetched once). */
  async show(name: string): Promise<void> {
    const my = ++this.seq;
    this.pick.value = name;
    this.el.dataset.state = "loading";
    this.el.dataset.name = name;
    this.o.shown(name);
    let p = this.cache.get(name);
    if (!p) {
      p = request<AnalysisResp>("GET", `api/analysis/${encodeURIComponent(name)}`);
      this.cache.set(name, p);
      p.catch(() => this.cache.delete(name));
    }
    try {
      const a = await p;
      if (my !== this.seq) return;
      this.current = a;
      if (this.label !== null && !a.labels.includes(this.label)) this.label = null;
      this.head = null;
      fill(this.labelSel, h("option", { value: ALL }, `All prompts (${a.meta.n_prompts})`), ...a.labels.map((l) => h("option", { value: `l:${l}` }, labelText(l))));
      this.labelSel.value = this.label === null ? ALL : `l:${this.label}`;
      const s = a.meta.spec;
      this.info.textContent = `${a.meta.n_prompts} prompts of ${baseName(s.dataset)} on ${s.model}: the routes from ${s.positions === "last" ? "each prompt's last position" : "every position"} at threshold ${s.threshold}, counted per route.`;
      this.renderMap();
      this.renderHead();
      this.renderFindings();
      this.el.dataset.state = "ready";
    } catch (err) {
      if (my !== this.seq) return;
      this.current = null;
      this.el.dataset.state = "error";
      fill(this.map, h("div", { class: "ds-error", "data-testid": "dataset-error" }, (err as Error).message));
      fill(this.headBox);
      fill(this.findings);
    }
  }

  private values(): number[][] {
    const a = this.current!;
    const per = this.measure === "mean" ? a.heads : a.frequency;
    return this.label === null ? per.all : per.labels[this.label];
  }

  private renderMap(): void {
    if (!this.current) return;
    const values = this.values();
    const max = this.measure === "frequency" ? 1 : Math.max(0, ...values.flat());
    const grid = heatmap({ values, max, what: WHAT[this.measure], selected: this.head, pick: (l, hd) => this.selectHead({ layer: l, head: hd }) });
    grid.dataset.measure = this.measure;
    grid.dataset.label = this.label ?? ALL;
    fill(this.map, grid, legend(max, WHAT[this.measure]), h("div", { class: "muted small note" }, "The last layer is on top, as in the route graph. Click a head for the prompts where it mattered most."));
  }

  /** Show the prompts where `head` mattered most. */
  async selectHead(head: Head): Promise<void> {
    const a = this.current;
    if (!a) return;
    this.head = head;
    this.renderMap();
    const my = ++this.headSeq;
    this.renderHead("loading");
    try {
      const r = await request<HeadPromptsResp>("GET", `api/analysis/${encodeURIComponent(a.name)}/head?${qs({ layer: head.layer, head: head.head })}`);
      if (my !== this.headSeq || this.current !== a) return;
      this.renderHead("ready", r.prompts);
    } catch (err) {
      if (my !== this.headSeq) return;
      this.renderHead("error", [], (err as Error).message);
    }
  }

  private renderHead(state?: "loading" | "ready" | "error", prompts: HeadPrompt[] = [], error = ""): void {
    const a = this.current;
    const hd = this.head;
    this.headBox.dataset.state = state ?? "none";
    if (!a || !hd) {
      delete this.headBox.dataset.layer;
      delete this.headBox.dataset.head;
      fill(this.headBox, h("h3", null, "Prompts"), h("div", { class: "muted small" }, "Click a head in the heatmap or a list for the prompts where it mattered most."));
      return;
    }
    this.headBox.dataset.layer = String(hd.layer);
    this.headBox.dataset.head = String(hd.head);
    const title = h("h3", null, `${layerName(hd.layer)} head ${hd.head}: where it mattered most`);
    if (state === "loading") return fill(this.headBox, title, h("div", { class: "muted small" }, "Loading its prompts…"));
    if (state === "error") return fill(this.headBox, title, h("div", { class: "ds-error" }, error));
    const items = prompts.map((p) =>
      h(
        "li",
        null,
        h(
          "button",
          { class: "ds-prompt", "data-testid": "dataset-prompt", "data-prompt": p.prompt, "data-pos": p.pos, "data-importance": p.importance, "data-label": p.label, title: "open this prompt's route to this position", onclick: () => this.o.openPrompt(a, p, hd) },
          h("span", { class: "ds-prompt-text" }, p.text),
          h("span", { class: "ds-prompt-meta small" }, h("span", { class: "ds-chip" }, labelText(p.label)), ` prompt ${p.prompt} · position ${p.pos} · importance ${fmt(p.importance)}`),
        ),
      ),
    );
    fill(this.headBox, title, items.length ? h("ol", { class: "ds-prompts" }, items) : h("div", { class: "muted small" }, "This head lies on no route of these prompts."), items.length ? h("div", { class: "muted small note" }, "Click a prompt to trace it: its route to that position opens.") : null);
  }

  private renderFindings(): void {
    const a = this.current!;
    const headList = (testid: string, rows: HeadScore[], what: string) =>
      rows.length
        ? h(
            "div",
            { class: "ds-heads" },
            rows.slice(0, 24).map((r) =>
              h("button", { class: "ds-headbtn", "data-testid": testid, "data-layer": r.layer, "data-head": r.head, "data-score": r.score, title: `${what} ${fmt(r.score)}` + (r.elsewhere !== undefined ? ` (elsewhere ${fmt(r.elsewhere)})` : ""), onclick: () => this.selectHead(r) }, `${layerName(r.layer)} h${r.head}`, h("span", { class: "muted" }, ` ${r.score.toFixed(2)}`)),
            ),
          )
        : h("div", { class: "muted small" }, "None above the bar.");
    fill(
      this.findings,
      h("h3", null, "Previous-token heads"),
      h("div", { class: "muted small" }, "Heads that give the previous token at least 0.4 of their attention on average."),
      headList("dataset-prev-head", a.previous_token_heads, "mean attention to the previous token"),
      h("h3", null, "Subword-merging heads"),
      h("div", { class: "muted small" }, "Heads that attend to the previous token where a token continues a word, clearly more than elsewhere."),
      headList("dataset-subword-head", a.subword_merging_heads, "mean attention to the previous piece of a word"),
      h("h3", null, "Label differences"),
      this.differences(a.label_differences),
    );
  }

  private differences(rows: LabelDifference[]): HTMLElement {
    if (!rows.length) return h("div", { class: "muted small" }, "One label only: nothing to compare.");
    const name = (r: LabelDifference) => (r.kind === "head" ? `${layerName(r.layer)} head ${r.index}` : r.kind === "ffn" ? `${layerName(r.layer)} FFN` : `${layerName(r.layer)} neuron ${r.index}`);
    const body = rows.slice(0, 20).map((r) =>
      h(
        "tr",
        { "data-testid": "dataset-diff", "data-label": r.label, "data-kind": r.kind, "data-layer": r.layer, "data-index": r.index ?? "", "data-difference": r.difference, class: r.kind === "head" ? "ds-clickable" : "", onclick: r.kind === "head" ? () => this.selectHead({ layer: r.layer, head: r.index! }) : undefined },
        h("td", null, labelText(r.label)),
        h("td", null, name(r)),
        h("td", { class: "num" }, fmt(r.in_label)),
        h("td", { class: "num" }, fmt(r.rest)),
        h("td", { class: "num " + (r.difference >= 0 ? "pos" : "neg") }, (r.difference >= 0 ? "+" : "−") + fmt(Math.abs(r.difference))),
      ),
    );
    return h(
      "div",
      null,
      h("div", { class: "muted small" }, "Mean importance per route in one label against the rest of the dataset, largest differences first."),
      h("table", { class: "ds-diffs small" }, h("thead", null, h("tr", null, h("th", null, "label"), h("th", null, "component"), h("th", null, "in label"), h("th", null, "rest"), h("th", null, "difference"))), h("tbody", null, body)),
    );
  }
}

function labelText(label: string): string {
  return label === "" ? "(no label)" : label;
}

function baseName(path: string): string {
  return path.split(/[\\/]/).filter(Boolean).pop() ?? path;
}
