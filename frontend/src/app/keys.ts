// Keyboard: ← / → change the target (from "all": the last / first position), ↑ / ↓ walk the
// selection along its column, the graph's own keys (graph/keys.ts), and ? for this help.

import { graphKey } from "../graph/keys";
import { $view } from "../state";
import { h } from "../ui/dom";
import type { App } from "./app";
import { moveSelection, select } from "./selection";
import { stepTarget } from "./target";
import { applyThreshold } from "./threshold";

export function installKeys(app: App): void {
  document.addEventListener("keydown", (e) => onKey(app, e));
}

function onKey(app: App, e: KeyboardEvent): void {
  const t = e.target as HTMLElement;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) {
    if (e.key === "Escape") t.blur();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  switch (e.key) {
    case "ArrowLeft":
    case "ArrowRight":
      if (app.trace) {
        e.preventDefault();
        stepTarget(app, e.key === "ArrowLeft" ? -1 : 1);
      }
      break;
    case "ArrowUp":
    case "ArrowDown":
      if (moveSelection(app, e.key === "ArrowUp" ? 1 : -1)) e.preventDefault();
      break;
    case "?":
      toggleHelp();
      break;
    default:
      graphKey(e.key, {
        view: app.view,
        threshold: () => $view.get().threshold,
        setThreshold: (tau) => applyThreshold(app, tau),
        clearSelection: () => select(app, null),
      });
  }
}

export function toggleHelp(): void {
  const existing = document.querySelector(".help-pop");
  if (existing) {
    existing.remove();
    return;
  }
  const rows: [string, string][] = [
    ["← →", "previous / next target position (from All: the last / first)"],
    ["↑ ↓", "move the selected node up / down its column"],
    ["[ ]", "lower / raise the threshold"],
    ["F", "fit the whole route"],
    ["+ −", "zoom"],
    ["Shift (hover)", "freeze the hover highlight"],
    ["Esc", "clear the selection"],
    ["Ctrl+Enter", "run the prompt"],
  ];
  const pop = h(
    "div",
    { class: "help-pop", role: "dialog" },
    h("h3", null, "Keyboard"),
    h("table", null, rows.map(([k, v]) => h("tr", null, h("td", null, h("kbd", null, k)), h("td", null, v)))),
    h("p", { class: "muted small" }, "Edge width and opacity grow with importance. Layers go bottom (embeddings) to top (the prediction); each layer has a row after attention and a row after the FFN."),
    h("button", { class: "btn small", onclick: () => pop.remove() }, "Close"),
  );
  document.body.append(pop);
}
