// The route is fetched twice: first at the threshold the user asked for (drawn at once), then at
// FETCH_MIN in the background (swapped in, the view kept) so the slider can go lower without a
// request. This module holds the background fetch (one at a time, AbortController) and its note
// on the graph: "refining…", "waiting for…" when the slider is below what was fetched, or a
// non-blocking error with a Retry button. The app (main.ts) decides what to fetch and draws it.

import "./refine.css";
import { h } from "./ui/dom";

const t = (x: number) => String(+x.toFixed(4));

export type RefineState = "idle" | "running" | "error";

export class Refinement {
  /** The note on the graph (data-testid="refine-note"); hidden when there is nothing to say. */
  readonly el: HTMLDivElement;
  state: RefineState = "idle";
  /** The threshold already drawn, and the one being fetched. */
  from = 0;
  to = 0;
  /** A threshold the user chose below `from`: it is drawn once the finer route is here. */
  waitingAt: number | null = null;
  error: string | null = null;
  /** Every refinement that ended: for the test hooks and the debug panel. */
  readonly log: { from: number; to: number; ok: boolean; ms: number; error?: string }[] = [];
  private ctl: AbortController | null = null;
  private t0 = 0;

  constructor(private onRetry: () => void) {
    this.el = h("div", { class: "refine-note", "data-testid": "refine-note", role: "status", "aria-live": "polite", hidden: true });
  }

  get refining(): boolean {
    return this.state === "running";
  }

  /** Fetch in the background; `done` runs only if this fetch was not cancelled or replaced. */
  async run<T>(from: number, to: number, fetch: (signal: AbortSignal) => Promise<T>, done: (value: T) => void): Promise<void> {
    this.stop();
    const ctl = new AbortController();
    this.ctl = ctl;
    this.state = "running";
    this.from = from;
    this.to = to;
    this.error = null;
    this.t0 = performance.now();
    this.render();
    let value: T;
    try {
      value = await fetch(ctl.signal);
    } catch (err) {
      if (ctl !== this.ctl) return; // replaced or cancelled meanwhile
      this.ctl = null;
      if ((err as Error)?.name === "AbortError") {
        this.state = "idle";
      } else {
        this.state = "error";
        this.error = String((err as Error)?.message ?? err);
        this.log.push({ from, to, ok: false, ms: performance.now() - this.t0, error: this.error });
      }
      this.render();
      return;
    }
    if (ctl !== this.ctl) return;
    this.ctl = null;
    this.state = "idle";
    this.log.push({ from, to, ok: true, ms: performance.now() - this.t0 });
    this.waitingAt = null;
    done(value);
    this.render();
  }

  /** A newer run, target or graph: drop the fetch in flight (its answer is ignored) and the note. */
  cancel(): void {
    this.stop();
    this.state = "idle";
    this.error = null;
    this.waitingAt = null;
    this.render();
  }

  private stop(): void {
    const ctl = this.ctl;
    this.ctl = null;
    ctl?.abort();
  }

  /** The slider went below the drawn threshold (tau), or back above it (null). */
  setWaiting(tau: number | null): void {
    if (tau === this.waitingAt) return;
    this.waitingAt = tau;
    this.render();
  }

  private render(): void {
    const el = this.el;
    el.classList.toggle("error", this.state === "error");
    el.classList.toggle("waiting", this.waitingAt !== null);
    if (this.state === "idle") {
      el.hidden = true;
      el.replaceChildren();
      el.dataset.state = "idle";
      return;
    }
    el.hidden = false;
    el.dataset.state = this.state;
    const below = `routes below threshold ${t(this.from)}`;
    if (this.state === "running") {
      el.replaceChildren(
        h("span", { class: "spinner", "aria-hidden": "true" }),
        this.waitingAt !== null
          ? h("span", { title: `the drawing shows threshold ${t(this.from)} until the finer route is here` }, `threshold ${t(this.waitingAt)}: waiting for the routes below ${t(this.from)}…`)
          : h("span", null, `refining: ${below} are loading…`),
      );
      return;
    }
    el.replaceChildren(
      h("span", { class: "refine-icon", "aria-hidden": "true" }, "!"),
      h(
        "span",
        { title: this.error ?? "" },
        `The ${below} could not be loaded: ${this.error}`,
        this.waitingAt !== null ? ` (drawn at ${t(this.from)})` : "",
      ),
      h("button", { class: "btn small", "data-testid": "refine-retry", onclick: () => this.onRetry() }, "Retry"),
      h("button", { class: "icon-btn", title: "dismiss", "aria-label": "dismiss note", onclick: () => this.dismiss() }, "×"),
    );
  }

  private dismiss(): void {
    this.state = "idle";
    this.render();
  }
}
