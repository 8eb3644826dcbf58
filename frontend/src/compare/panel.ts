// The comparison's controls: the Compare button and its form (a second prompt), the line over
// the graph that says which colour is which prompt (with "Exit compare"), and the side panel of
// the heads and neurons whose importance changed most (signed, B minus A, with both values).

import { DIFF_COLORS } from "../graph/diff";
import { h, num, tokenSpan, truncate } from "../ui/dom";
import type { CompareRow } from "../gen/types";
import type { Comparison } from "./flow";

export interface CompareHooks {
  open(): void;
  run(promptB: string): void;
  close(): void;
}

const swatch = (color: string) => h("i", { class: "cmp-swatch", style: `background:${color}` });
const signed = (d: number) => `${d > 0 ? "+" : ""}${num(d)}`;

export class CompareUi {
  readonly openBtn: HTMLButtonElement;
  readonly form: HTMLElement;
  readonly input: HTMLTextAreaElement;
  readonly runBtn: HTMLButtonElement;

  constructor(private o: CompareHooks) {
    this.openBtn = h("button", { class: "btn small", "data-testid": "compare-open", title: "compare the route shown with a second prompt's route (same model)", onclick: () => o.open() }, "Compare…");
    this.input = h("textarea", { class: "prompt-input cmp-input", "data-testid": "compare-prompt", rows: 2, spellcheck: "false", placeholder: "A second prompt (B)…", "aria-label": "second prompt" });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.submit();
      } else if (e.key === "Escape") this.hideForm();
    });
    this.runBtn = h("button", { class: "btn primary", "data-testid": "compare-run", onclick: () => this.submit() }, "Compare");
    this.form = h(
      "div",
      { class: "cmp-form", "data-testid": "compare-form", hidden: true, role: "dialog", "aria-label": "compare with a second prompt" },
      h("div", { class: "cmp-form-head" }, h("b", null, "Compare with a second prompt"), h("span", { class: "muted small" }, " traced on the same model; edges are coloured by which prompt's route weighs them more")),
      this.input,
      h("div", { class: "cmp-form-row" }, this.runBtn, h("button", { class: "btn subtle", onclick: () => this.hideForm() }, "Cancel")),
    );
  }

  private submit(): void {
    const b = this.input.value;
    if (b.trim()) this.o.run(b);
  }

  showForm(prefill: string): void {
    if (!this.form.hidden) return this.hideForm();
    if (!this.input.value) this.input.value = prefill;
    this.form.hidden = false;
    this.input.focus();
  }

  hideForm(): void {
    this.form.hidden = true;
  }

  setBusy(b: boolean): void {
    this.runBtn.disabled = b;
    this.runBtn.textContent = b ? "Comparing…" : "Compare";
    this.openBtn.classList.toggle("busy", b);
  }

  /** The line over the graph: which colour is which prompt, the target, and Exit compare. */
  renderLine(c: Comparison, el: HTMLElement): void {
    const t = c.resp.graph.target as { token?: string | null; pos?: number | null };
    const quote = (p: string) => h("span", { class: "cmp-prompt", title: p }, `‘${truncate(p.replace(/\s+/g, " "), 48)}’`);
    el.replaceChildren(
      h(
        "span",
        { class: "cmp-legend", "data-testid": "compare-legend" },
        h("span", { class: "cmp-key", "data-side": "a" }, swatch(DIFF_COLORS.a), h("b", null, "A"), " stronger: ", quote(promptOf(c, "a"))),
        h("span", { class: "cmp-key", "data-side": "b" }, swatch(DIFF_COLORS.b), h("b", null, "B"), " stronger: ", quote(c.prompt)),
        h("span", { class: "cmp-key", "data-side": "same" }, swatch(DIFF_COLORS.same), "unchanged (|B − A| < 0.005)"),
      ),
      h("span", { class: "muted" }, " · route to "),
      tokenSpan(t.token ?? "", "tok pred"),
      h("span", { class: "muted" }, ` (column ${t.pos ?? "?"}) · width: the larger weight · ${c.traceA.model} · `),
      h("button", { class: "btn small", "data-testid": "compare-close", title: "back to prompt A's single route", onclick: () => this.o.close() }, "Exit compare"),
    );
  }

  /** The side panel: the heads and neurons whose importance changed most. */
  panel(c: Comparison): HTMLElement {
    const def = c.resp.graph.compare?.definition;
    const rows = (list: CompareRow[], kind: "head" | "neuron") =>
      list.map((r) => {
        const id = kind === "head" ? r.head : r.neuron;
        return h(
          "tr",
          { class: "cmp-row", "data-testid": `compare-${kind}`, "data-layer": r.layer, [`data-${kind}`]: id, "data-delta": r.delta, "data-a": r.a, "data-b": r.b },
          h("td", null, kind === "head" ? `L${r.layer} H${id}` : `L${r.layer} N${id}`),
          h("td", { class: "num" }, num(r.a)),
          h("td", { class: "num" }, num(r.b)),
          h("td", { class: `num cmp-delta ${r.delta > 0 ? "to-b" : r.delta < 0 ? "to-a" : ""}` }, signed(r.delta)),
        );
      });
    const table = (title: string, list: CompareRow[], kind: "head" | "neuron", what: string) =>
      h(
        "section",
        { class: "cmp-section" },
        h("h3", null, title),
        h("p", { class: "muted small" }, what),
        list.length
          ? h("table", { class: "cmp-table" }, h("thead", null, h("tr", null, h("th", null, kind === "head" ? "head" : "neuron"), h("th", null, "A"), h("th", null, "B"), h("th", null, "B − A"))), h("tbody", null, rows(list, kind)))
          : h("p", { class: "muted" }, "None changed."),
      );
    return h(
      "div",
      { class: "panel cmp-panel", "data-testid": "compare-panel" },
      h("div", { class: "panel-kicker" }, "Comparison"),
      h("div", { class: "panel-title" }, "What changed between the two prompts"),
      h("p", { class: "small" }, swatch(DIFF_COLORS.a), h("b", null, "A "), promptOf(c, "a")),
      h("p", { class: "small" }, swatch(DIFF_COLORS.b), h("b", null, "B "), c.prompt),
      def ? h("p", { class: "muted small" }, def) : null,
      table("Heads", c.resp.heads, "head", "A head's importance in a route: the sum of its shares over the route's attention edges into its layer. Largest change first."),
      table("Neurons", c.resp.neurons, "neuron", "A neuron's importance at the target's block output. Largest change first."),
      h("p", { class: "muted small" }, "Hover an edge for its weight in each route. Exit compare to inspect prompt A's nodes and heads."),
    );
  }
}

function promptOf(c: Comparison, side: "a" | "b"): string {
  const prompts = c.resp.graph.compare?.prompts;
  return prompts ? prompts[side === "a" ? 0 : 1] : side === "b" ? c.prompt : "";
}
