// Compact columns: once the threshold rests, narrow the token columns the drawn route does not
// touch (and widen those it touches now); the "compact" switch turns it on and off.

import { makeLayout } from "../graph/layout";
import type { App } from "./app";

let timer: number | undefined;

export function queueRelayout(app: App, delay: number): void {
  clearTimeout(timer);
  timer = window.setTimeout(() => relayout(app), delay);
}

export function relayout(app: App, force = false): void {
  const p = app.prepared;
  const pr = app.pruned;
  const tr = app.trace;
  if (!p || !pr || !tr) return;
  const T = tr.tokens.length;
  const used = new Uint8Array(T);
  for (const n of app.compact ? pr.nodeList : p.nodes.map((x) => x.idx)) used[p.nodes[n].pos] = 1;
  const old = app.layoutUsed;
  if (!force && old && old.length === T) {
    let changed = 0;
    for (let i = 0; i < T; i++) if (old[i] !== used[i]) changed++;
    if (changed === 0) return;
    // re-placing a big drawing costs about as much as drawing it again: only when many columns
    // change, and never automatically past 15k elements (the "compact" box forces it)
    const drawn = pr.edgeList.length * 2 + pr.nodeList.length;
    if (drawn > 15000 || (drawn > 5000 && changed < 0.25 * T)) return;
  }
  const { w, h } = app.view.size();
  const t0 = performance.now();
  const layout = makeLayout(p, T, w, h, app.compact ? pr.node : undefined);
  app.layoutUsed = layout.used;
  app.view.relayout(layout);
  app.lastRelayoutMs = performance.now() - t0;
}

export function setCompact(app: App, on: boolean): void {
  app.compact = on;
  localStorage.setItem("routelens.compact", on ? "1" : "0");
  app.thresholdCtl.setCompact(on);
  relayout(app, true);
}
