// The predictions strip: the model's top next-token prediction after every token, one chip per
// position, and first the "All" chip (every position's route at once). A click on a chip picks
// the target; the active chip follows the view store's target.

import { listenKeys } from "nanostores";
import { $view, type Target } from "../state";
import type { TraceResp } from "../types";
import { bytesNote, h, pct, tokenSpan, truncate } from "../ui/dom";

export class PredictionsStrip {
  readonly el: HTMLElement;
  private list: HTMLDivElement;
  private info: HTMLSpanElement;

  constructor(private pick: (t: Target) => void) {
    this.list = h("div", { class: "pred-list", "data-testid": "prediction-list", role: "listbox", "aria-label": "next-token predictions by position" });
    this.info = h("span", { class: "muted small" }, "Run a prompt to see the model's next-token prediction at every position.");
    this.el = h("section", { class: "predictions" }, h("div", { class: "strip-head" }, h("b", null, "Predictions"), this.info), this.list);
    listenKeys($view, ["target"], (v) => this.mark(v.target));
  }

  /** One chip per position of `tr`; `fileName`: the trace is a graph opened from that file. */
  render(tr: TraceResp, fileName: string | null): void {
    const target = $view.get().target;
    const frag = document.createDocumentFragment();
    // a file holds one route: its All chip only when that route is every position's
    if (!fileName || target === "all") frag.append(this.allChip(tr.tokens.length));
    tr.tokens.forEach((tok, i) => {
      const preds = tr.predictions[i] ?? [];
      const top = preds[0];
      const chip = h(
        "div",
        {
          class: "chip",
          "data-testid": "prediction",
          "data-pos": i,
          "data-token": tok,
          "data-bytes": tr.token_bytes?.[i],
          role: "option",
          "aria-selected": "false",
          tabindex: 0,
          title: `position ${i}: ${JSON.stringify(tok)}${bytesNote(tr.token_bytes?.[i])}\nnext-token predictions:\n` + preds.map((p) => `  ${JSON.stringify(p.token)}  ${pct(p.prob)}${bytesNote(p.bytes)}`).join("\n") + "\nclick: show the route to this position",
          onclick: () => this.pick(i),
          onkeydown: (e: Event) => (e as KeyboardEvent).key === "Enter" && this.pick(i),
        },
        h("div", { class: "chip-tok" }, h("span", { class: "chip-pos" }, String(i)), tokenSpan(truncate(tok, 18), "tok", false, tr.token_bytes?.[i])),
        top ? h("div", { class: "chip-pred" }, tokenSpan(truncate(top.token, 14), "tok pred", false, top.bytes), h("span", { class: "chip-prob", style: `--p:${top.prob}` }, pct(top.prob))) : h("div", { class: "chip-pred muted" }, "–"),
      );
      frag.append(chip);
    });
    this.list.replaceChildren(frag);
    const what = target === "all" ? "the route to every position" : `the route to position ${target} only`;
    this.info.textContent = fileName
      ? `${tr.tokens.length} tokens · opened from ${fileName}: it holds ${what}, and no predictions (they need the live model) · Run a prompt to go back to live traces`
      : `${tr.tokens.length} tokens · each chip: the token and the model's top next-token prediction after it · click one to route it (←/→), or All for every position's route`;
    this.mark(target);
  }

  private allChip(T: number): HTMLElement {
    const pick = () => this.pick("all");
    return h(
      "div",
      {
        class: "chip chip-all",
        "data-testid": "prediction-all",
        role: "option",
        "aria-selected": "false",
        tabindex: 0,
        title: `every position: the union of the routes to all ${T} positions\nclick: show them at once`,
        onclick: pick,
        onkeydown: (e: Event) => (e as KeyboardEvent).key === "Enter" && pick(),
      },
      h("div", { class: "chip-tok" }, "All"),
      h("div", { class: "chip-pred muted" }, `${T} positions`),
    );
  }

  clear(): void {
    this.list.replaceChildren();
    this.info.textContent = "";
  }

  /** The chip of `target` is the active one (scrolled into view). */
  private mark(target: Target): void {
    for (const el of Array.from(this.list.children) as HTMLElement[]) {
      const on = el.dataset.testid === "prediction-all" ? target === "all" : Number(el.dataset.pos) === target;
      el.classList.toggle("active", on);
      el.setAttribute("aria-selected", on ? "true" : "false");
      if (on) el.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }
}
