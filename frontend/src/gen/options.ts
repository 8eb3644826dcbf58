// The "Generate" option beside the prompt's Run: how many tokens to generate after the prompt
// (0 or empty: a plain trace), greedy or sampled, and the sampling seed. What is typed here is
// what the next Run asks for; the view store ($view gen/sample/seed) holds what the trace shown
// was asked with.

import { h } from "../ui/dom";

export interface GenAsk {
  generate: number;
  sample: boolean;
  seed: number;
}

export class GenerateOptions {
  readonly el: HTMLElement;
  readonly count: HTMLInputElement;
  readonly sampleBox: HTMLInputElement;
  readonly seedInput: HTMLInputElement;

  constructor(
    readonly max: number,
    run: () => void,
  ) {
    this.count = h("input", {
      type: "number",
      class: "gen-count",
      "data-testid": "generate-count",
      min: 0,
      max,
      step: 1,
      placeholder: "0",
      "aria-label": "tokens to generate",
      title: `generate this many tokens after the prompt (1 to ${max}) and trace prompt and continuation together; 0 or empty: trace the prompt only`,
    });
    this.sampleBox = h("input", { type: "checkbox", "data-testid": "generate-sample", "aria-label": "sample the generated tokens" });
    this.seedInput = h("input", { type: "number", class: "gen-seed", "data-testid": "generate-seed", min: 0, step: 1, value: "0", "aria-label": "sampling seed", title: "the seed of the sampling: the same seed gives the same tokens" });
    const enter = (e: KeyboardEvent) => {
      if (e.key === "Enter") {
        e.preventDefault();
        run();
      }
    };
    this.count.addEventListener("keydown", enter);
    this.seedInput.addEventListener("keydown", enter);
    this.count.addEventListener("input", () => this.refresh());
    this.sampleBox.addEventListener("change", () => this.refresh());
    this.el = h(
      "div",
      { class: "gen-options", title: "generate tokens after the prompt, then step through them" },
      h("label", { class: "gen-field" }, h("span", { class: "field-label" }, "Generate"), this.count, h("span", { class: "muted small" }, "tokens")),
      h("label", { class: "check gen-sample", title: "sample each token from the model's distribution (unchecked: always its top choice)" }, this.sampleBox, " sample"),
      h("label", { class: "gen-field gen-seed-field" }, h("span", { class: "muted small" }, "seed"), this.seedInput),
    );
    this.refresh();
  }

  /** What the next Run asks for (generate 0: no generation). */
  ask(): GenAsk {
    const n = Math.round(Number(this.count.value));
    const generate = Number.isFinite(n) && n > 0 ? Math.min(n, this.max) : 0;
    const seed = Math.max(0, Math.round(Number(this.seedInput.value)) || 0);
    return { generate, sample: generate > 0 && this.sampleBox.checked, seed };
  }

  set(a: Partial<GenAsk>): void {
    if (a.generate !== undefined) this.count.value = a.generate > 0 ? String(a.generate) : "";
    if (a.sample !== undefined) this.sampleBox.checked = a.sample;
    if (a.seed !== undefined) this.seedInput.value = String(a.seed);
    this.refresh();
  }

  private refresh(): void {
    const on = Number(this.count.value) > 0;
    this.el.classList.toggle("on", on);
    this.sampleBox.disabled = !on;
    this.seedInput.disabled = !on || !this.sampleBox.checked;
  }
}
