// Links that ask for work (security review, issue 9). The URL holds the view
// (`?model=…&prompt=…`), so a link from any site could make this page load a model (memory) and
// run a trace, with the user's login cookie, the moment it opens. So the page asks first: it
// fills in the controls and shows a bar with Run / Dismiss; nothing is loaded or run before Run.
//
// The one exception keeps reloads working: writeUrl (state.ts) remembers in sessionStorage the
// last URL the page wrote itself. sessionStorage belongs to this tab and this origin, so a reload
// or "back" in the same tab finds its own URL there and restores the view at once, while a link
// opened from another site in a new tab finds nothing (or another URL) and asks.

import type { UrlState } from "../state";
import { h, truncate } from "./dom";

const OWN_URL_KEY = "routelens.ownUrl";
const SHOWN_CHARS = 80;

function currentUrl(): string {
  return location.pathname + location.search + location.hash;
}

/** Called by writeUrl after it set the URL: this exact URL is the page's own. */
export function rememberOwnUrl(): void {
  try {
    sessionStorage.setItem(OWN_URL_KEY, currentUrl());
  } catch {
    // storage disabled: every link asks, which is the safe side
  }
}

/** Whether the page was opened with the URL it last wrote itself in this tab. */
export function openedFromOwnUrl(): boolean {
  try {
    return sessionStorage.getItem(OWN_URL_KEY) === currentUrl();
  } catch {
    return false;
  }
}

/** What a link asks for beyond a plain visit: a prompt to run, a model other than the default. */
export interface LinkWork {
  model: string;
  prompt: string | null;
  /** the model is not the server's default: a plain visit would not load it */
  loadModel: boolean;
}

/** The work a URL asks for that needs the user's confirmation, or null (a plain visit, or a reload). */
export function linkWork(u: UrlState, model: string, defaultModel: string): LinkWork | null {
  const work: LinkWork = { model, prompt: u.prompt || null, loadModel: !!model && model !== defaultModel };
  if (!work.prompt && !work.loadModel) return null;
  return openedFromOwnUrl() ? null : work;
}

export interface LinkConfirm {
  readonly work: LinkWork;
  readonly el: HTMLElement;
  close(): void;
}

/** The bar that asks; Run and Dismiss close it before calling back. Text goes in as text only. */
export function linkConfirmBar(work: LinkWork, actions: { run: () => void; dismiss: () => void }): LinkConfirm {
  const quoted = (text: string, testid: string) =>
    h("span", { class: "link-quote", "data-testid": testid, title: text }, truncate(text.replace(/\s+/g, " "), SHOWN_CHARS));
  const model = quoted(work.model, "link-confirm-model");
  const message = work.prompt
    ? ["This link asks to run the prompt “", quoted(work.prompt, "link-confirm-prompt"), "” on ", model, work.loadModel ? " (loading it first)." : "."]
    : ["This link asks to load the model ", model, "."];
  const el = h(
    "div",
    { class: "link-confirm", "data-testid": "link-confirm", role: "region", "aria-label": "confirm what the link asks for" },
    h("span", { class: "link-icon", "aria-hidden": "true" }, "↗"),
    h("div", { class: "link-text" }, h("div", null, message), h("div", { class: "muted small" }, "Nothing is loaded or run until you choose.")),
    h("button", { class: "btn primary", "data-testid": "link-confirm-run", onclick: () => done(actions.run) }, work.prompt ? "Run" : "Load"),
    h("button", { class: "btn subtle", "data-testid": "link-confirm-dismiss", onclick: () => done(actions.dismiss) }, "Dismiss"),
  );
  let open = true;
  const close = () => {
    open = false;
    el.remove();
  };
  const done = (action: () => void) => {
    if (!open) return;
    close();
    action();
  };
  return { work, el, close };
}
