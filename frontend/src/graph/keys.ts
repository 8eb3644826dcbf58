// The route graph's own keys, shared by the web app and the standalone viewer:
// [ and ] lower / raise the threshold by 1.25x, f fits the drawing, + and - zoom, Escape clears.

import type { GraphView } from "./view";

export interface GraphKeyTarget {
  view: GraphView;
  threshold(): number;
  setThreshold(t: number): void;
  clearSelection(): void;
}

/** Act on a graph key; false when `key` is not one of them. */
export function graphKey(key: string, g: GraphKeyTarget): boolean {
  switch (key) {
    case "[":
      g.setThreshold(g.threshold() / 1.25);
      return true;
    case "]":
      g.setThreshold(g.threshold() * 1.25);
      return true;
    case "f":
    case "F":
      g.view.fit();
      return true;
    case "+":
    case "=":
      g.view.zoomBy(1.4);
      return true;
    case "-":
      g.view.zoomBy(1 / 1.4);
      return true;
    case "Escape":
      g.clearSelection();
      g.view.setHover(null);
      return true;
  }
  return false;
}
