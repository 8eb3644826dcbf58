// The foil picker, under the predictions strip: the model's top predictions at the target
// position, each but the top one with a "vs" button that picks it as the foil ("why the top token
// rather than this one"), a field to type any single token as the foil, and × to clear it. The
// chosen foil is $view.foil (a token id; the URL's foil=); the flows are in why.ts.

import { $view } from "../state";
import type { Prediction, TraceResp } from "../types";
import { bytesNote, h, pct, tokenSpan, truncate } from "../ui/dom";

export interface FoilHooks {
  /** Pick the token with this id as the foil (null: none). */
  pick(id: number | null): void;
  /** Pick typed text as the foil (resolved by the server; it says when it is not one token). */
  pickText(text: string): Promise<void>;
}

export class FoilBar {
  readonly el: HTMLElement;
  private chips: HTMLElement;
  private input: HTMLInputElement;
  private error: HTMLElement;
  private clearBtn: HTMLButtonElement;
  private label: HTMLElement;

  constructor(private o: FoilHooks) {
    this.chips = h("div", { class: "foil-chips", "data-testid": "foil-predictions" });
    this.input = h("input", {
      type: "text",
      class: "foil-input",
      "data-testid": "foil-input",
      placeholder: "any token, e.g. ␣John",
      "aria-label": "a foil token: type one token (a leading space counts) and press Enter",
      title: "type one token as the foil (a leading space is part of the token, as in \" John\") and press Enter",
      onkeydown: (e: Event) => (e as KeyboardEvent).key === "Enter" && this.submit(),
    });
    this.clearBtn = h("button", { class: "icon-btn foil-clear", "data-testid": "foil-clear", title: "clear the foil: back to the plain route", "aria-label": "clear the foil", onclick: () => this.o.pick(null) }, "×");
    this.error = h("span", { class: "foil-error", "data-testid": "foil-error", role: "alert" });
    this.label = h("span", { class: "foil-label muted small" });
    this.el = h(
      "div",
      { class: "foil-bar", "data-testid": "foil-bar", hidden: true },
      this.label,
      this.chips,
      h("span", { class: "foil-type" }, h("span", { class: "muted small" }, "or vs"), this.input, h("button", { class: "btn small", onclick: () => this.submit() }, "Set")),
      this.clearBtn,
      this.error,
    );
  }

  private async submit(): Promise<void> {
    const text = this.input.value;
    if (!text) return;
    this.showError(null);
    this.input.disabled = true;
    try {
      await this.o.pickText(text);
      this.input.value = "";
    } catch (err) {
      this.showError((err as Error).message);
    } finally {
      this.input.disabled = false;
    }
  }

  showError(message: string | null): void {
    this.error.textContent = message ? `Foil not set: ${message}` : "";
  }

  /** The predictions at the target of `tr` (hidden for every position, or a file). */
  render(tr: TraceResp | null, live: boolean, foilToken: string | null): void {
    const { target, foil } = $view.get();
    const preds = tr && live && target !== "all" ? (tr.predictions[target] ?? []) : [];
    this.el.hidden = !preds.length;
    if (!preds.length) return;
    const top = preds[0];
    this.label.replaceChildren(h("b", null, "Why "), tokenSpan(top.token, "tok pred", false, top.bytes), h("b", null, foil === null ? " and not…" : " rather than "));
    const chips = preds.map((p, i) => this.chip(p, i === 0, p.id === foil));
    // a typed foil that is not among the top predictions: its own chip
    if (foil !== null && !preds.some((p) => p.id === foil)) chips.push(this.chip({ token: foilToken ?? `id ${foil}`, id: foil, prob: NaN }, false, true));
    this.chips.replaceChildren(...chips);
    this.clearBtn.hidden = foil === null;
  }

  private chip(p: Prediction, isTop: boolean, isFoil: boolean): HTMLElement {
    const prob = Number.isFinite(p.prob) ? pct(p.prob) : "typed";
    return h(
      "span",
      {
        class: "foil-chip" + (isTop ? " is-top" : "") + (isFoil ? " is-foil" : ""),
        "data-testid": "foil-chip",
        "data-token-id": p.id,
        "data-token": p.token,
        title: `${JSON.stringify(p.token)} (id ${p.id}${bytesNote(p.bytes)})${Number.isFinite(p.prob) ? `: probability ${pct(p.prob)}` : ""}` + (isTop ? "\nthe predicted token: the route explains it" : isFoil ? "\nthe foil: the route explains the top token against it" : ""),
      },
      tokenSpan(truncate(p.token, 14), "tok", false, p.bytes),
      h("span", { class: "muted small" }, ` ${prob}`),
      isTop || isFoil
        ? null
        : h("button", { class: "foil-pick", "data-testid": "foil-pick", "data-token-id": p.id, title: `why the top token rather than ${JSON.stringify(p.token)}: the contrastive route`, onclick: () => this.o.pick(p.id) }, "vs"),
    );
  }
}
