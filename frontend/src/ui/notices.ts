// The error banner over the page and the overlay over the graph (a spinner and what is happening).

import { ApiError } from "../api";
import { h } from "./dom";

export class Banner {
  readonly el = h("div", { class: "banner-slot" });

  show(err: unknown): void {
    if ((err as Error)?.name === "AbortError") return;
    const e = err instanceof ApiError ? err : new ApiError(String((err as Error)?.message ?? err), "client_error", 0, "");
    console.warn("routelens:", e.code, e.message);
    const banner = h(
      "div",
      { class: "error-banner", "data-testid": "error-banner", role: "alert" },
      h("span", { class: "err-icon", "aria-hidden": "true" }, "!"),
      h("div", { class: "err-text" }, h("div", { class: "err-message" }, e.message), h("div", { class: "err-meta muted small" }, [e.code, e.status ? `HTTP ${e.status}` : "", e.request].filter(Boolean).join(" · "))),
      h("button", { class: "icon-btn", title: "dismiss", "aria-label": "dismiss error", onclick: () => banner.remove() }, "×"),
    );
    this.el.replaceChildren(banner);
  }

  clear(): void {
    this.el.replaceChildren();
  }
}

export class Overlay {
  readonly el = h("div", { class: "graph-overlay" });

  /** `text` over the graph (null: nothing), with a spinner while something is under way. */
  set(text: string | null, spinner = false): void {
    if (!text) {
      this.el.hidden = true;
      return;
    }
    this.el.hidden = false;
    this.el.replaceChildren(h("div", { class: "overlay-box" }, spinner ? h("span", { class: "spinner" }) : null, text));
  }
}
