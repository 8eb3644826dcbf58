// The knockout check beside the threshold (docs/verify.md): "Check" reruns the model with only the
// drawn route's attention edges (GET /verify at the view's target, threshold and foil), against
// random knockouts of the same weight, and shows the figure (verifyfig.ts), the kept shares in
// words and whether the route beats random. "Curve" asks for one report per threshold. It takes
// seconds: a progress line with the elapsed time and Cancel (the fetch is aborted). A change of
// trace, target or foil clears the figure; a change of threshold marks it stale.

import { listenKeys } from "nanostores";
import { qs, request } from "../api";
import type { App } from "../app/app";
import { $view } from "../state";
import { h, tokenSpan } from "../ui/dom";
import type { VerifyReport } from "./types";
import { curveChart, shareWords, verifyFigure } from "./verifyfig";

const TRIALS = 5;
const SEED = 0;
const CURVE = [0.01, 0.02, 0.04, 0.08, 0.16];

export class VerifyControl {
  readonly button: HTMLButtonElement;
  readonly card: HTMLElement;
  /** The last report shown and the curve (for the test hook). */
  report: VerifyReport | null = null;
  curve: VerifyReport[] | null = null;
  private abort: AbortController | null = null;
  private timer: number | undefined;
  private key = "";
  private renorm: HTMLInputElement;
  private curveBtn: HTMLButtonElement;
  private head: HTMLElement;
  private progress: HTMLElement;
  private figure: HTMLElement;
  private curveSlot: HTMLElement;
  private staleNote: HTMLElement;

  constructor(private app: App) {
    this.button = h("button", { class: "btn small", "data-testid": "verify-run", title: "check the route: rerun the model with only its attention edges, against random knockouts of the same weight", onclick: () => this.run(false) }, "Check");
    this.renorm = h("input", { type: "checkbox", "data-testid": "verify-renormalise" });
    this.renorm.addEventListener("change", () => this.run(false));
    this.curveBtn = h("button", { class: "btn small", "data-testid": "verify-curve", "aria-pressed": "false", title: "the check at several thresholds, as a curve", onclick: () => this.toggleCurve() }, "Curve");
    this.head = h("div", { class: "vc-head small" });
    this.progress = h("div", { class: "vc-progress small", "data-testid": "verify-progress", hidden: true });
    this.figure = h("div", { "data-testid": "verify-figure" });
    this.curveSlot = h("div", { class: "vc-curve" });
    this.staleNote = h("div", { class: "vc-stale small", hidden: true });
    this.card = h(
      "div",
      { class: "verify-card", "data-testid": "verify-card", hidden: true },
      h("div", { class: "vc-title" }, h("b", null, "Knockout check"), h("button", { class: "icon-btn", title: "close", "aria-label": "close the check", onclick: () => this.close() }, "×")),
      this.head,
      h(
        "div",
        { class: "vc-tools small" },
        h("label", { class: "check", title: "divide each edited attention row by its new sum" }, this.renorm, " renormalise rows"),
        this.curveBtn,
        h("button", { class: "btn small", title: "check again at the current threshold", onclick: () => this.run(false) }, "Check again"),
      ),
      this.staleNote,
      this.progress,
      this.figure,
      this.curveSlot,
    );
    listenKeys($view, ["threshold"], () => this.markStale());
    listenKeys($view, ["target", "foil"], () => this.sync());
  }

  /** What the figure is for: trace, target and foil (a change clears it). */
  private viewKey(): string {
    const v = $view.get();
    return `${this.app.trace?.trace_id ?? ""}|${v.target}|${v.foil ?? ""}`;
  }

  /** Called when the route line is redrawn: a new trace, target or foil clears the figure. */
  sync(): void {
    const usable = !!this.app.trace && !this.app.file && this.app.trace.trace_id !== "synthetic" && $view.get().target !== "all";
    this.button.disabled = !usable;
    this.button.title = usable ? "check the route: rerun the model with only its attention edges, against random knockouts of the same weight" : "the check needs a live trace and one target position";
    if (this.key && this.key !== this.viewKey()) this.close();
  }

  close(): void {
    this.cancel();
    this.card.hidden = true;
    this.figure.replaceChildren();
    this.curveSlot.replaceChildren();
    this.curveBtn.setAttribute("aria-pressed", "false");
    this.report = null;
    this.curve = null;
    this.key = "";
  }

  private cancel(): void {
    this.abort?.abort();
    this.abort = null;
    clearInterval(this.timer);
    this.progress.hidden = true;
  }

  private markStale(): void {
    if (!this.report && !this.curve) return;
    const stale = this.report !== null && Math.abs(this.report.threshold - $view.get().threshold) > 1e-9;
    this.card.dataset.stale = String(stale);
    this.staleNote.hidden = !stale;
    this.staleNote.textContent = stale ? `Checked at threshold ${this.report!.threshold}; the threshold is now ${+$view.get().threshold.toFixed(4)}. Check again for this one.` : "";
  }

  private params(curve: boolean): string {
    const v = $view.get();
    const base = { target: v.target as number, renormalise: this.renorm.checked, trials: TRIALS, seed: SEED, foil_id: v.foil ?? undefined };
    if (!curve) return qs({ ...base, threshold: +v.threshold.toFixed(4) });
    const ts = Array.from(new Set([...CURVE, +v.threshold.toFixed(4)])).sort((a, b) => a - b);
    return qs({ ...base, curve: true, thresholds: ts.slice(0, 8).join(",") });
  }

  private toggleCurve(): void {
    const on = this.curveBtn.getAttribute("aria-pressed") !== "true";
    this.curveBtn.setAttribute("aria-pressed", String(on));
    if (!on) {
      this.curveSlot.replaceChildren();
      this.curve = null;
      return;
    }
    this.run(true);
  }

  /** Run the check (`curve`: one report per threshold) for the view shown. */
  async run(curve: boolean): Promise<void> {
    const tr = this.app.trace;
    const v = $view.get();
    if (!tr || this.app.file || v.target === "all") return;
    if (this.key !== this.viewKey()) this.close();
    this.cancel();
    this.key = this.viewKey();
    // under the route and contrast lines (the toolbar wraps on narrow windows)
    const above = this.card.previousElementSibling as HTMLElement | null;
    if (above) this.card.style.top = `${above.offsetTop + above.offsetHeight + 6}px`;
    this.card.hidden = false;
    this.renderHead();
    const ctrl = new AbortController();
    this.abort = ctrl;
    const t0 = performance.now();
    const runs = curve ? "at each threshold of the curve" : "";
    const tick = () => {
      const s = ((performance.now() - t0) / 1000).toFixed(0);
      this.progress.replaceChildren(
        h("span", { class: "spinner" }),
        h("span", null, `Rerunning the model with the route alone and ${TRIALS} random knockouts ${runs}… ${s} s `),
        h("button", { class: "btn small", "data-testid": "verify-cancel", onclick: () => this.cancel() }, "Cancel"),
      );
    };
    tick();
    this.progress.hidden = false;
    this.timer = window.setInterval(tick, 1000);
    (curve ? this.curveSlot : this.figure).dataset.state = "running";
    try {
      const path = `api/trace/${tr.trace_id}/verify?${this.params(curve)}`;
      if (curve) {
        const d = await request<{ reports: VerifyReport[] }>("GET", path, undefined, ctrl.signal);
        if (this.abort !== ctrl) return;
        this.curve = d.reports;
        this.curveSlot.replaceChildren(curveChart(d.reports, $view.get().threshold));
        this.curveSlot.dataset.state = "done";
      } else {
        const r = await request<VerifyReport>("GET", path, undefined, ctrl.signal);
        if (this.abort !== ctrl) return;
        this.report = r;
        this.showReport(r);
      }
    } catch (err) {
      if (this.abort !== ctrl) return;
      const aborted = (err as Error).name === "AbortError";
      (curve ? this.curveSlot : this.figure).replaceChildren(h("div", { class: aborted ? "muted small" : "inline-error" }, aborted ? "Check cancelled." : `The check failed: ${(err as Error).message}`));
    } finally {
      if (this.abort === ctrl) this.cancel();
      const slot = curve ? this.curveSlot : this.figure;
      if (slot.dataset.state === "running") slot.dataset.state = "idle";
    }
  }

  /** What is checked: the route to which position, at which threshold, for which token. */
  private renderHead(): void {
    const tr = this.app.trace!;
    const v = $view.get();
    const pos = v.target as number;
    const top = tr.predictions[pos]?.[0];
    this.head.replaceChildren(
      h("span", { class: "muted" }, "Route to "),
      tokenSpan(tr.tokens[pos] ?? "", "tok"),
      h("span", { class: "muted" }, ` (position ${pos}) at threshold ${+v.threshold.toFixed(4)}: `),
      top ? tokenSpan(top.token, "tok pred") : "",
      v.foil !== null ? h("span", { class: "muted" }, " (the contrastive route against the foil)") : "",
    );
  }

  private showReport(r: VerifyReport): void {
    const beats = r.beats_random;
    this.figure.dataset.state = "done";
    this.figure.replaceChildren(
      verifyFigure(r),
      h("p", { class: "vc-words small", "data-testid": "verify-words" }, shareWords(r), "."),
      h(
        "div",
        { class: "vc-verdict " + (beats ? "beats" : "fails"), "data-testid": "verify-verdict", "data-beats": String(beats) },
        beats ? "Beats random" : "Does not beat random",
        h("span", { class: "muted small" }, verdictWords(r)),
      ),
      r.measure === "diff" ? h("p", { class: "vc-words small", "data-testid": "verify-diff" }, diffWords(r)) : "",
      h("div", { class: "muted small" }, `${r.route.kept_edges ?? "?"} attention edges kept, ${r.route.removed_edges ?? "?"} removed (weight ${r.route.removed_weight?.toFixed(1) ?? "?"}); ${r.random.length} random trials, seed ${r.seed}${r.renormalise ? ", rows renormalised" : ""}.`),
    );
    this.markStale();
  }
}

/** Why the verdict: a plain route claims the token's probability, a contrastive one the logit difference. */
function verdictWords(r: VerifyReport): string {
  const what = r.measure === "diff" ? "logit difference to the foil" : "probability";
  return r.beats_random
    ? `: the route alone keeps more of the ${what} than every random knockout of the same weight.`
    : `: some random knockout of the same weight keeps as much of the ${what} as the route.`;
}

/** The logit difference (token minus foil) in the full run, with the route alone and with random knockouts. */
function diffWords(r: VerifyReport): string {
  const d = (x: number | undefined) => (x === undefined ? "?" : (x >= 0 ? "+" : "") + x.toFixed(2));
  const best = Math.max(...r.random.map((x) => x.diff ?? -Infinity));
  return `Logit difference to ${JSON.stringify(r.target.foil ?? "")}: full run ${d(r.full.diff)}, route alone ${d(r.route.diff)}, random knockouts ${d(r.random_mean.diff)} on average, ${d(best)} at best.`;
}
