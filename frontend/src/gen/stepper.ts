// The step control of a generated continuation: the generated tokens as buttons (each with its
// probability and its rank among the model's predictions where it was chosen), ◀ ▶, and
// "step k of N". A step is current when the target is the position that predicted it; choosing
// one asks for that position as the target.

import { listenKeys } from "nanostores";
import { $view, type Target } from "../state";
import { h, pct, tokenSpan, truncate } from "../ui/dom";
import type { GenStep, Generation } from "./types";

export class Stepper {
  readonly el: HTMLElement;
  private list: HTMLDivElement;
  private where: HTMLSpanElement;
  private info: HTMLSpanElement;
  private prevBtn: HTMLButtonElement;
  private nextBtn: HTMLButtonElement;
  private gen: Generation | null = null;

  constructor(private pick: (pos: number) => void) {
    this.list = h("div", { class: "gen-list", role: "listbox", "aria-label": "generated tokens" });
    this.where = h("span", { class: "gen-where", "data-testid": "gen-where" });
    this.info = h("span", { class: "muted small" });
    this.prevBtn = h("button", { class: "icon-btn", "data-testid": "gen-prev", title: "previous step", "aria-label": "previous step", onclick: () => this.move(-1) }, "◀");
    this.nextBtn = h("button", { class: "icon-btn", "data-testid": "gen-next", title: "next step", "aria-label": "next step", onclick: () => this.move(1) }, "▶");
    this.el = h(
      "section",
      { class: "gen-stepper", "data-testid": "gen-stepper", hidden: true },
      h("div", { class: "strip-head" }, h("b", null, "Generated"), this.prevBtn, this.where, this.nextBtn, this.info),
      this.list,
    );
    listenKeys($view, ["target"], (v) => this.mark(v.target));
  }

  get steps(): GenStep[] {
    return this.gen?.steps ?? [];
  }

  /** Show a trace's generation (null: none, the control hides). */
  render(gen: Generation | null | undefined): void {
    this.gen = gen && gen.steps.length ? gen : null;
    this.el.hidden = !this.gen;
    if (!this.gen) {
      this.list.replaceChildren();
      return;
    }
    const g = this.gen;
    this.info.textContent = g.sampled
      ? `sampled, seed ${g.seed ?? 0}, temperature ${g.temperature} · each token: its probability and rank where it was chosen · click one to see its route (←/→)`
      : "greedy: each token is the model's top choice · click one to see its route (←/→)";
    this.list.replaceChildren(
      ...g.steps.map((s) =>
        h(
          "button",
          {
            class: "gen-step",
            "data-testid": "gen-step",
            "data-step": s.step,
            "data-pos": s.pos,
            "data-token-id": s.token_id,
            "data-rank": s.rank,
            role: "option",
            "aria-selected": "false",
            title: `step ${s.step + 1}: ${JSON.stringify(s.token)}, predicted at position ${s.pos}\nprobability ${pct(s.prob)}, rank ${s.rank + 1} among the model's predictions there\nclick: show the route to this token`,
            onclick: () => this.pick(s.pos),
          },
          tokenSpan(truncate(s.token, 16), "tok"),
          h("span", { class: "gen-prob" }, pct(s.prob)),
          h("span", { class: `gen-rank${s.rank > 0 ? " off-top" : ""}` }, `#${s.rank + 1}`),
        ),
      ),
    );
    this.mark($view.get().target);
  }

  /** The index of the current step (-1: the target is no step's). */
  current(target: Target = $view.get().target): number {
    return target === "all" ? -1 : this.steps.findIndex((s) => s.pos === target);
  }

  /** ◀ / ▶: the previous / next step (from outside the continuation: the last / first). */
  move(dir: -1 | 1): void {
    const n = this.steps.length;
    if (!n) return;
    const k = this.current();
    const next = k < 0 ? (dir < 0 ? n - 1 : 0) : Math.min(n - 1, Math.max(0, k + dir));
    this.pick(this.steps[next].pos);
  }

  private mark(target: Target): void {
    const k = this.current(target);
    const n = this.steps.length;
    this.where.textContent = k >= 0 ? `step ${k + 1} of ${n}` : `${n} steps · none chosen`;
    this.prevBtn.disabled = k === 0;
    this.nextBtn.disabled = k === n - 1;
    Array.from(this.list.children).forEach((el, i) => {
      el.classList.toggle("is-current", i === k);
      el.setAttribute("aria-selected", i === k ? "true" : "false");
      if (i === k) el.scrollIntoView({ block: "nearest", inline: "nearest" });
    });
  }
}
