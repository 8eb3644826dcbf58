// Asking why (docs/contrastive.md, docs/verify.md), the web app's side: the foil ($view.foil, the
// URL's foil=) picked under the predictions strip (foil.ts); the contrast line under the route
// line ("Why ' Mary' rather than ' John': logit difference …", and the way to the direct logit
// attribution view, dla.ts); the attribution fetched once per (trace, target, foil) for the
// panels (panels.ts); and the knockout check beside the threshold (verify.ts).
//
// The foil is cleared when the target changes (app/target.ts) and by a plain Run; a reload keeps it.

import { listenKeys } from "nanostores";
import { qs, request } from "../api";
import type { App } from "../app/app";
import { cachedRoute, loadGraph } from "../app/route";
import { $view, setView } from "../state";
import { fill, h, tokenSpan } from "../ui/dom";
import { dlaPanel } from "./dla";
import { FoilBar } from "./foil";
import { type WhyCtx, signed } from "./panels";
import type { Attribution, ContrastTarget } from "./types";
import { VerifyControl } from "./verify";

export class Why {
  readonly foilBar: FoilBar;
  /** The contrast line, under the route line. */
  readonly line = h("div", { class: "contrast-line small", "data-testid": "contrast-line" });
  readonly verify: VerifyControl;
  private attributions = new Map<string, Promise<Attribution>>();
  /** Token text of foils seen (typed, or named by a route), by id. */
  private foilTokens = new Map<number, string>();

  constructor(private app: App) {
    this.foilBar = new FoilBar({ pick: (id) => this.setFoil(id), pickText: (t) => this.pickText(t) });
    this.verify = new VerifyControl(app);
    listenKeys($view, ["foil"], () => this.render());
  }

  /** A live trace with one target position (no foil, attribution or check for a file or "all"). */
  private live(): boolean {
    const tr = this.app.trace;
    return !!tr && !this.app.file && tr.trace_id !== "synthetic" && $view.get().target !== "all";
  }

  /** Pick the foil (null: the plain route) and fetch the route against it. */
  setFoil(id: number | null): void {
    const app = this.app;
    if (id !== null && !this.live()) return;
    this.foilBar.showError(null);
    if (id === $view.get().foil) return;
    setView({ foil: id });
    app.inspector.render();
    loadGraph(app);
  }

  /** Typed text as the foil: the server resolves it to one token (or says why it cannot). */
  async pickText(text: string): Promise<void> {
    const tr = this.app.trace;
    const target = $view.get().target;
    if (!tr || !this.live() || target === "all") throw new Error("pick one target position of a live trace first.");
    const a = await request<Attribution>("GET", `api/trace/${tr.trace_id}/attribution?${qs({ pos: target, foil: text })}`);
    if (a.foil_id === null || a.foil_id === undefined) throw new Error("the server did not name a foil token.");
    this.attributions.set(`${tr.trace_id}|${target}|${a.foil_id}`, Promise.resolve(a));
    this.foilTokens.set(a.foil_id, a.foil ?? text);
    this.setFoil(a.foil_id);
  }

  /** The direct logit attribution at the target toward its top token (against the foil, if any);
   * fetched once per trace, target and foil. Null: no live single target. */
  attribution(): Promise<Attribution> | null {
    const tr = this.app.trace;
    const { target, foil } = $view.get();
    if (!tr || !this.live() || target === "all") return null;
    const key = `${tr.trace_id}|${target}|${foil ?? ""}`;
    let p = this.attributions.get(key);
    if (!p) {
      p = request<Attribution>("GET", `api/trace/${tr.trace_id}/attribution?${qs({ pos: target, foil_id: foil ?? undefined })}`);
      this.attributions.set(key, p);
      p.catch(() => this.attributions.delete(key));
      if (this.attributions.size > 24) this.attributions.delete(this.attributions.keys().next().value!);
    }
    return p;
  }

  /** The foil's token text, if known. */
  foilToken(): string | null {
    const { target, foil } = $view.get();
    if (foil === null) return null;
    const g = cachedRoute(this.app, target, foil)?.target as ContrastTarget | undefined;
    if (g?.foil) this.foilTokens.set(foil, g.foil);
    const pred = target === "all" ? undefined : this.app.trace?.predictions[target]?.find((p) => p.id === foil);
    return this.foilTokens.get(foil) ?? pred?.token ?? null;
  }

  /** What the panels use (panels.ts). */
  panelCtx(): WhyCtx | null {
    const tr = this.app.trace;
    const { target, foil } = $view.get();
    if (!tr || !this.live() || target === "all") return null;
    const top = tr.predictions[target]?.[0];
    return { pos: target, foil, token: top?.token ?? null, foilToken: this.foilToken(), topId: top?.id ?? null, attribution: () => this.attribution() };
  }

  /** The foil bar and the contrast line, for the view shown. */
  render(): void {
    const app = this.app;
    const live = this.live();
    this.foilBar.render(app.trace, live, this.foilToken());
    this.verify.sync();
    const { target, foil } = $view.get();
    if (!live || target === "all" || !app.trace) {
      fill(this.line);
      return;
    }
    const top = app.trace.predictions[target]?.[0];
    const g = cachedRoute(app, target, foil)?.target as ContrastTarget | undefined;
    const dlaBtn = h("button", { class: "btn small", "data-testid": "dla-open", title: "how much each head and FFN writes toward this prediction, signed, in logits", onclick: () => this.openDla() }, "Direct logit attribution");
    if (foil === null) {
      fill(this.line, h("span", { class: "muted" }, "Why this prediction? Pick a foil under the predictions (vs) for the route of one token against another, or see "), dlaBtn);
      return;
    }
    const token = g?.token ?? top?.token ?? "";
    const foilTok = this.foilToken() ?? `id ${foil}`;
    fill(
      this.line,
      h(
        "span",
        { "data-testid": "contrast-route" },
        h("span", { class: "muted" }, "Contrastive route: why "),
        tokenSpan(token, "tok pred"),
        h("b", null, " rather than "),
        tokenSpan(foilTok, "tok foil"),
        g?.logit_diff !== undefined
          ? h("span", { class: "muted", "data-testid": "logit-diff", "data-value": g.logit_diff, title: "logit(token) − logit(foil) at the target, before any soft-cap" }, ` · logit difference ${signed(g.logit_diff)}`)
          : h("span", { class: "muted" }, " · computing…"),
        " ",
      ),
      dlaBtn,
      h("button", { class: "btn small subtle", title: "back to the plain route", onclick: () => this.setFoil(null) }, "Clear foil"),
    );
  }

  /** The direct logit attribution view, in the inspector (until something is selected). */
  openDla(): void {
    const app = this.app;
    const ctx = this.panelCtx();
    if (!ctx || !app.trace) return;
    app.inspector.body.replaceChildren(dlaPanel(app, ctx));
  }

  /** Words for the contrast: "logit(' Mary') − logit(' John')", or the token's own logit. */
  static measure(token: string | null, foil: string | null): string {
    return foil === null ? `the logit of ${JSON.stringify(token ?? "?")}` : `logit(${JSON.stringify(token ?? "?")}) − logit(${JSON.stringify(foil)})`;
  }
}
