// What a trace will cost, before it runs: after the user stops typing a long prompt, POST
// /api/estimate and show "≈ 612 tokens · ~95 MiB · ~4 s" by the Run button (a warning with the
// server's reason when it will not fit; Run stays allowed, the server refuses with its own
// message). The debug panel shows the trace's estimate beside what was measured (costRows).
// An older server without these fields or the endpoint: nothing is shown, nothing breaks.

import "./estimate.css";
import { ApiError, request } from "./api";
import { h } from "./ui/dom";

export interface Estimate {
  peak_bytes: number;
  kept_bytes: number;
  forward_seconds: number;
  route_seconds: number;
}

export interface Measured {
  peak_bytes: number | null;
  forward_seconds: number;
  kept_bytes: number;
}

export interface EstimateResp {
  model: string;
  n_tokens: number;
  estimate?: Estimate;
  limits?: { max_trace_memory_bytes: number | null; prompt_token_limit: number };
  fits?: boolean;
  why?: string | null;
}

/** Prompts shorter than this run fast enough: no estimate is asked for. */
export const ESTIMATE_MIN_CHARS = 200;
const DEBOUNCE_MS = 500;

const isNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);

export function fmtBytes(b: unknown): string | null {
  if (!isNum(b) || b < 0) return null;
  const mib = b / 2 ** 20;
  if (mib >= 1024) return `${+(mib / 1024).toFixed(mib >= 10240 ? 0 : 1)} GiB`;
  if (mib >= 1) return `${Math.round(mib)} MiB`;
  return `${Math.max(1, Math.round(b / 1024))} KiB`;
}

export function fmtSeconds(s: unknown): string | null {
  if (!isNum(s) || s < 0) return null;
  if (s < 1) return "<1 s";
  if (s < 90) return `${Math.round(s)} s`;
  return `${Math.round(s / 60)} min`;
}

/** "≈ 612 tokens · ~95 MiB · ~4 s" (the parts the answer has). */
export function estimateLine(r: EstimateResp): string {
  const e = r.estimate;
  const mem = fmtBytes(e?.peak_bytes);
  const secs = e && isNum(e.forward_seconds) ? fmtSeconds(e.forward_seconds + (isNum(e.route_seconds) ? e.route_seconds : 0)) : null;
  return [`≈ ${isNum(r.n_tokens) ? r.n_tokens.toLocaleString("en-US") : "?"} tokens`, mem && `~${mem}`, secs && (secs.startsWith("<") ? secs : `~${secs}`)].filter(Boolean).join(" · ");
}

export class EstimateBox {
  /** data-testid="estimate": under the Run button, over the page (appearing moves nothing). */
  readonly el: HTMLDivElement;
  /** The last answer shown (test hooks). */
  last: EstimateResp | null = null;
  private timer: number | undefined;
  private seq = 0;
  private ctl: AbortController | null = null;
  private unsupported = false; // an older server: no /api/estimate

  constructor(private what: () => { model: string | null; prompt: string; chat: boolean } | null) {
    this.el = h("div", { class: "estimate", "data-testid": "estimate", role: "status", "aria-live": "polite", hidden: true });
  }

  /** The user changed the prompt, the model or the chat switch: ask again once typing stops. */
  schedule(): void {
    clearTimeout(this.timer);
    const w = this.what();
    if (this.unsupported || !w || w.prompt.length <= ESTIMATE_MIN_CHARS) {
      this.clear();
      return;
    }
    this.timer = window.setTimeout(() => this.fetch(), DEBOUNCE_MS);
  }

  clear(): void {
    clearTimeout(this.timer);
    this.seq++;
    this.ctl?.abort();
    this.ctl = null;
    this.last = null;
    this.el.hidden = true;
    this.el.replaceChildren();
  }

  private async fetch(): Promise<void> {
    const w = this.what();
    if (!w || w.prompt.length <= ESTIMATE_MIN_CHARS) return this.clear();
    const seq = ++this.seq;
    this.ctl?.abort();
    const ctl = new AbortController();
    this.ctl = ctl;
    this.el.dataset.state = "loading";
    try {
      const r = await request<EstimateResp>("POST", "api/estimate", { model: w.model || null, prompt: w.prompt, chat: w.chat }, ctl.signal);
      if (seq !== this.seq) return;
      this.show(r);
    } catch (err) {
      if (seq !== this.seq || (err as Error)?.name === "AbortError") return;
      if (err instanceof ApiError && (err.code === "not_found" || err.code === "method_not_allowed")) {
        this.unsupported = true; // an older server: stay quiet from now on
        this.clear();
        return;
      }
      this.last = null;
      this.el.hidden = false;
      // the server's refusal of this prompt (too long, too big): what Run would meet, as a warning
      const refused = err instanceof ApiError && err.status >= 400 && err.status < 500;
      this.el.dataset.state = refused ? "refused" : "error";
      this.el.className = "estimate" + (refused ? " warn" : " muted");
      this.el.title = "";
      this.el.replaceChildren(
        refused
          ? h("span", { class: "estimate-why", "data-testid": "estimate-why" }, `⚠ ${(err as Error).message}`)
          : h("span", { title: (err as Error).message }, `no estimate: ${(err as Error).message}`),
      );
    } finally {
      if (this.ctl === ctl) this.ctl = null;
    }
  }

  private show(r: EstimateResp): void {
    this.last = r;
    const warn = r.fits === false;
    const e = r.estimate;
    const lim = r.limits;
    const title = [
      e && `peak memory ${fmtBytes(e.peak_bytes) ?? "?"} (kept after the run: ${fmtBytes(e.kept_bytes) ?? "?"})`,
      e && `forward pass ${fmtSeconds(e.forward_seconds) ?? "?"}, first route ${fmtSeconds(e.route_seconds) ?? "?"}`,
      lim && isNum(lim.prompt_token_limit) && `this server's limits: ${lim.prompt_token_limit.toLocaleString("en-US")} tokens` + (isNum(lim.max_trace_memory_bytes) ? `, ${fmtBytes(lim.max_trace_memory_bytes)} per trace` : ""),
      "estimated from the model's shape before the run",
    ]
      .filter(Boolean)
      .join("\n");
    this.el.hidden = false;
    this.el.dataset.state = warn ? "warn" : "ok";
    this.el.className = "estimate" + (warn ? " warn" : "");
    this.el.title = title;
    this.el.replaceChildren(h("span", { class: "estimate-line" }, estimateLine(r)));
    if (warn) this.el.append(h("span", { class: "estimate-why", "data-testid": "estimate-why" }, `⚠ ${r.why || "this prompt may not fit this server's limits"}`));
  }
}

/** The debug panel's "Estimated / measured" table; null when the server sent neither. */
export function costRows(cost: { estimate?: Estimate | null; measured?: Measured | null }): HTMLElement | null {
  const e = cost.estimate && typeof cost.estimate === "object" ? cost.estimate : null;
  const m = cost.measured && typeof cost.measured === "object" ? cost.measured : null;
  if (!e && !m) return null;
  const row = (label: string, est: string | null | undefined, got: string | null | undefined) => h("tr", null, h("td", null, label), h("td", null, est ?? "–"), h("td", null, got ?? "–"));
  const secs = (s: unknown) => (isNum(s) ? `${+s.toFixed(2)} s` : null);
  return h(
    "table",
    { class: "kv cost", "data-testid": "debug-cost" },
    h("tr", null, h("th", null, ""), h("th", null, "estimated"), h("th", null, "measured")),
    row("peak memory", fmtBytes(e?.peak_bytes), m && m.peak_bytes === null ? "n/a" : fmtBytes(m?.peak_bytes)),
    row("kept memory", fmtBytes(e?.kept_bytes), fmtBytes(m?.kept_bytes)),
    row("forward", secs(e?.forward_seconds), secs(m?.forward_seconds)),
    row("first route", secs(e?.route_seconds), null),
  );
}
