// "Why this head attends": the pre-softmax score of one head from query position i to key
// position j, decomposed into (query part, key part) pairs (GET /api/trace/{id}/qk). Parts are
// what the residual stream at i and at j is made of: the embeddings, earlier heads' writes
// ("L3 H2"), FFN writes ("L3 FFN"), attention biases, "bias". Loaded when the section is opened
// (the head panel stays fast); errors are shown in the section, not in the page's banner.

import "./qk.css";
import { qs, request } from "../api";
import { h, num, pct } from "../ui/dom";
import type { PanelCtx } from "./context";
import { layerName } from "../layers";

export interface QkPart {
  name: string;
  kind: string;
  layer: number | null;
  head: number | null;
  total: number;
}

export interface QkInfo {
  layer: number;
  head: number;
  query: number;
  key: number;
  scale: number;
  score: number;
  capped: number | null;
  attention: number;
  parts_sum: number;
  query_parts: QkPart[];
  key_parts: QkPart[];
  pairs: { query: string; key: string; value: number }[];
  matrix: { rows: string[]; cols: string[]; values: number[][] };
}

export interface QkRef {
  layer: number;
  head: number;
  query: number;
  key: number;
}

const TOP = 10;
const cache = new Map<string, Promise<QkInfo>>();
let keepOpen = false; // opened once, the section opens again for the next head or edge

const signed = (v: number, d = 3) => (v > 0 ? "+" : v < 0 ? "−" : "") + num(Math.abs(v), d);
const isNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);

/** The API path of the decomposition (relative to the page). */
export function qkPath(traceId: string, q: QkRef, k = TOP): string {
  return `api/trace/${encodeURIComponent(traceId)}/qk?${qs({ layer: q.layer, head: q.head, query: q.query, key: q.key, k })}`;
}

function load(traceId: string, q: QkRef): Promise<QkInfo> {
  const path = qkPath(traceId, q);
  let p = cache.get(path);
  if (!p) {
    p = request<QkInfo>("GET", path);
    cache.set(path, p);
    p.catch(() => cache.delete(path));
    if (cache.size > 24) cache.delete(cache.keys().next().value!);
  }
  return p;
}

/** The section for head `q.head` (a head of the panel; -1, "All heads", asks for one). */
export function qkSection(ctx: PanelCtx, q: QkRef): HTMLElement {
  const body = h("div", { class: "qk-body" });
  const details = h(
    "details",
    { class: "psection qk", "data-testid": "qk-panel", "data-layer": q.layer, "data-head": q.head, "data-query": q.query, "data-key": q.key },
    h("summary", { class: "qk-summary", "data-testid": "qk-toggle" }, h("h3", null, "Why this head attends")),
    body,
  );
  if (q.head < 0) {
    body.append(h("p", { class: "muted small" }, "Pick one head in the list above: its attention score from this query to this key is split into the pairs of parts that make it."));
    details.open = keepOpen;
    details.addEventListener("toggle", () => (keepOpen = details.open));
    return details;
  }
  let started = false;
  const start = () => {
    if (started) return;
    started = true;
    body.replaceChildren(h("div", { class: "loading" }, h("span", { class: "spinner" }), "Decomposing the score…"));
    load(ctx.traceId, q).then(
      (d) => body.replaceChildren(...qkView(ctx, q, d)),
      (err: Error) => {
        started = false; // opening it again tries again
        body.replaceChildren(h("div", { class: "inline-error", "data-testid": "qk-error" }, `The score could not be decomposed: ${err.message}`), howTo(ctx, q));
      },
    );
  };
  details.addEventListener("toggle", () => {
    keepOpen = details.open;
    if (details.open) start();
  });
  if (keepOpen) {
    details.open = true;
    start();
  }
  return details;
}

function howTo(ctx: PanelCtx, q: QkRef): HTMLElement {
  const path = qkPath(ctx.traceId, q);
  return h(
    "p",
    { class: "qk-howto muted small", "data-testid": "qk-howto" },
    "In Python: ",
    h("code", null, `trace.why_attends(${q.layer}, ${q.head}, ${q.query}, ${q.key})`),
    " · API: ",
    h("a", { href: path, target: "_blank", rel: "noopener", title: "the same numbers as JSON" }, h("code", null, `GET /${path}`)),
  );
}

function qkView(ctx: PanelCtx, q: QkRef, d: QkInfo): Node[] {
  const pairs = Array.isArray(d.pairs) ? d.pairs : [];
  const max = Math.max(1e-9, ...pairs.map((p) => Math.abs(p.value)));
  const tok = (pos: number) => JSON.stringify(ctx.tokens[pos] ?? "?");
  const facts = h(
    "div",
    { class: "qk-facts", "data-testid": "qk-score" },
    fact("score", isNum(d.score) ? signed(d.score, 4) : "–", `pre-softmax score of ${layerName(q.layer)} head ${q.head}: query ${q.query} ${tok(q.query)} → key ${q.key} ${tok(q.key)} (q·k × ${isNum(d.scale) ? num(d.scale, 4) : "scale"})`),
    isNum(d.capped) ? fact("soft-capped", signed(d.capped, 4), "the score after the model's attention soft-capping: what the softmax sees") : null,
    fact("attention", isNum(d.attention) ? pct(d.attention) : "–", "the attention weight after the softmax over all keys"),
    isNum(d.parts_sum) ? fact("sum of parts", signed(d.parts_sum, 4), "the pairs below, all of them added up: equals the score") : null,
  );
  const list = pairs.length
    ? h(
        "ol",
        { class: "qk-pairs" },
        pairs.map((p) =>
          h(
            "li",
            { class: "qk-pair", "data-testid": "qk-pair", "data-query": p.query, "data-key": p.key, "data-value": p.value, title: `query part ${p.query} · key part ${p.key}: ${signed(p.value, 5)}` },
            h("span", { class: "qk-names" }, h("span", { class: "qk-q" }, p.query), h("span", { class: "qk-x muted" }, " · "), h("span", { class: "qk-k" }, p.key)),
            h("span", { class: "qk-bar" }, h("span", { class: p.value >= 0 ? "up" : "down", style: `width:${Math.max(2, (Math.abs(p.value) / max) * 100).toFixed(1)}%` })),
            h("span", { class: "qk-v " + (p.value >= 0 ? "up" : "down") }, signed(p.value)),
          ),
        ),
      )
    : h("div", { class: "muted small" }, "no pairs");
  const map = matrixView(d);
  return [
    facts,
    h("div", { class: "muted small note" }, "Top pairs (query part · key part): the score is the sum of q(part at the query) · k(part at the key) over all pairs. Positive pairs raise the attention to this key."),
    list,
    ...(map ? [map] : []),
    howTo(ctx, q),
  ];
}

function fact(label: string, value: string, title: string): HTMLElement {
  return h("span", { class: "qk-fact", title }, h("span", { class: "muted" }, label + " "), h("b", null, value));
}

/** White to blue (raises the score) or to vermilion (lowers it), as the panels' POS / NEG. */
function cellColour(v: number, range: number): string {
  const t = Math.min(1, Math.abs(v) / range) ** 0.7;
  const to = v >= 0 ? [0, 114, 178] : [213, 94, 0];
  const c = [255, 255, 255].map((w, i) => Math.round(w + (to[i] - w) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function matrixView(d: QkInfo): HTMLElement | null {
  const m = d.matrix;
  if (!m || !Array.isArray(m.rows) || !Array.isArray(m.cols) || !Array.isArray(m.values) || !m.rows.length || !m.cols.length) return null;
  let range = 1e-9;
  for (const row of m.values) for (const v of row ?? []) if (isNum(v)) range = Math.max(range, Math.abs(v));
  const total = (parts: QkPart[] | undefined, name: string) => parts?.find((p) => p.name === name)?.total;
  const other = (name: string) => (/^other\b/i.test(name) ? " qk-other" : "");
  const colTitle = (c: string) => {
    const t = total(d.key_parts, c);
    return `key part ${c}` + (isNum(t) ? ` · its pairs add up to ${signed(t, 4)}` : "");
  };
  const rowTitle = (r: string) => {
    const t = total(d.query_parts, r);
    return `query part ${r}` + (isNum(t) ? ` · its pairs add up to ${signed(t, 4)}` : "");
  };
  const table = h(
    "table",
    { class: "qk-matrix", "data-testid": "qk-matrix", "aria-label": "score of each (query part, key part) pair" },
    h("thead", null, h("tr", null, h("th", { class: "qk-corner muted", scope: "col" }, "query ↓ · key →"), m.cols.map((c) => h("th", { class: "qk-col" + other(c), scope: "col", title: colTitle(c) }, h("span", null, c))))),
    h(
      "tbody",
      null,
      m.rows.map((r, i) =>
        h(
          "tr",
          null,
          h("th", { class: "qk-row" + other(r), scope: "row", title: rowTitle(r) }, r),
          m.cols.map((c, j) => {
            const v = m.values[i]?.[j];
            const ok = isNum(v);
            return h("td", {
              class: "qk-cell" + other(r) + other(c),
              style: ok ? `background:${cellColour(v, range)}` : undefined,
              "data-value": ok ? v : undefined,
              title: ok ? `query ${r} · key ${c}: ${signed(v, 5)}` : `query ${r} · key ${c}: –`,
            });
          }),
        ),
      ),
    ),
  );
  return h(
    "figure",
    { class: "qk-figure" },
    h("figcaption", null, h("b", null, "Pairs as a map"), h("span", { class: "muted small" }, ` · rows: parts at the query, columns: parts at the key; hover a cell for its value`)),
    h("div", { class: "qk-scroll" }, table),
    h(
      "div",
      { class: "qk-legend muted small" },
      h("span", { class: "qk-swatch", style: `background:${cellColour(-range, range)}` }),
      ` ${signed(-range)} lowers`,
      h("span", { class: "qk-swatch", style: "background:#fff" }),
      " 0 ",
      h("span", { class: "qk-swatch", style: `background:${cellColour(range, range)}` }),
      ` ${signed(range)} raises the score`,
    ),
  );
}
