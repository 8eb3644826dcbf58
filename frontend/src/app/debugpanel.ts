// The debug panel (servers started with debug on): the trace's timings and cost, the drawing's
// timings and size, the server's own numbers (api/debug, polled while open) and the last requests.

import { request, requestLog } from "../api";
import { costRows } from "../estimate";
import { fill, h, truncate } from "../ui/dom";
import type { App } from "./app";

export class DebugPanel {
  private el: HTMLElement | null = null;
  private server: Record<string, unknown> | null = null;

  constructor(private app: App) {}

  toggle(): void {
    if (this.el) {
      this.el.remove();
      this.el = null;
      return;
    }
    this.el = h("aside", { class: "debug", "data-testid": "debug-panel" });
    document.body.append(this.el);
    this.render();
    const tick = async () => {
      if (!this.el) return;
      try {
        this.server = await request<Record<string, unknown>>("GET", "api/debug");
        this.render();
      } catch {
        /* optional endpoint */
      }
      if (this.el) setTimeout(tick, 4000);
    };
    tick();
  }

  render(): void {
    const el = this.el;
    if (!el) return;
    const app = this.app;
    const stats = app.view.stats();
    const cost = costRows(app.traceCost);
    const mem = (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory;
    const kv = (o: Record<string, unknown>) => h("table", { class: "kv" }, Object.entries(o).map(([k, v]) => h("tr", null, h("td", null, k), h("td", null, typeof v === "number" ? String(+v.toFixed(4)) : typeof v === "object" ? JSON.stringify(v) : String(v)))));
    fill(
      el,
      h("div", { class: "debug-head" }, h("b", null, "Debug"), h("button", { class: "icon-btn", onclick: () => this.toggle() }, "×")),
      h("h4", null, "Trace timings (s)"),
      kv(app.traceTimings),
      cost ? h("h4", null, "Trace cost: estimated / measured") : null,
      cost,
      h("h4", null, "Drawing"),
      kv({
        "redraw ms (prune + DOM)": +app.lastRedrawMs.toFixed(2),
        "frame ms (to next paint)": +app.lastFrameMs.toFixed(1),
        "drawn nodes": stats.nodes,
        "drawn edges": stats.edges,
        "SVG elements": stats.dom,
        "JS heap MB": mem ? +(mem.usedJSHeapSize / 2 ** 20).toFixed(1) : "n/a",
      }),
      this.server ? h("h4", null, "Server") : null,
      this.server ? kv(this.server) : null,
      h("h4", null, "Requests"),
      h(
        "table",
        { class: "reqs" },
        requestLog
          .slice(-14)
          .reverse()
          .map((r) => h("tr", { class: r.status >= 400 || r.status === 0 ? "bad" : "" }, h("td", null, r.method), h("td", { class: "path", title: r.path }, truncate(r.path, 48)), h("td", null, String(r.status || "ERR")), h("td", null, `${r.ms.toFixed(0)} ms`), h("td", null, r.bytes > 1e5 ? `${(r.bytes / 1e6).toFixed(2)} MB` : `${(r.bytes / 1e3).toFixed(1)} kB`))),
      ),
    );
  }
}
