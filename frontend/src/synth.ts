// Synthetic route graphs with the shape of real ones (same ids, kinds and top-down pruning as
// routelens/routes/graph.py), for the dev mock server and for measuring redraw speed on large
// graphs in the browser (window.__routelensDebug.synth).

import type { GEdge, GNode, Graph } from "./types";

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export function rng(key: string): () => number {
  let a = hash(key) || 1;
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface AttnRow {
  resid: number;
  sources: Map<number, number[]>; // source position -> per-head importances
}

/** Importances of the parts of the node after attention at (layer, pos). */
export function attnRow(seed: string, layer: number, pos: number, nHeads: number): AttnRow {
  const r = rng(`${seed}:a:${layer}:${pos}`);
  // calibrated on real routes (smollm2-135m, 375 tokens): the residual carries most of a node
  // (median 0.93), attention spreads the rest thinly (median edge 0.018, ~2.6 edges > 0.01)
  const resid = 0.97 - 0.3 * r() ** 2 * Math.max(0.2, 1 - layer / 40);
  const rest = (1 - resid) * 0.98;
  const raw = new Map<number, number>();
  const add = (j: number, w: number) => {
    if (j >= 0 && j <= pos) raw.set(j, (raw.get(j) ?? 0) + w);
  };
  add(0, 2.5 * r() ** 2);
  add(pos, 1.0 * r());
  add(pos - 1, 1.0 * r() ** 2);
  const extra = Math.min(pos, Math.round(24 * Math.max(0.1, 1 - layer / 24)));
  for (let k = 0; k < extra; k++) add(Math.floor(r() * (pos + 1)), 0.25 * r() ** 2);
  let total = 0;
  for (const w of raw.values()) total += w;
  const sources = new Map<number, number[]>();
  for (const [j, w] of raw) {
    const share = total > 0 ? (w / total) * rest : 0;
    const hw = Array.from({ length: nHeads }, () => r() ** 4);
    const hs = hw.reduce((a, b) => a + b, 0) || 1;
    sources.set(
      j,
      hw.map((x) => (x / hs) * share),
    );
  }
  return { resid, sources };
}

export function ffnRow(seed: string, layer: number, pos: number): { resid: number; ffn: number } {
  const r = rng(`${seed}:f:${layer}:${pos}`);
  const u = r();
  const ffn = u < 0.1 ? 0.6 + 0.4 * r() : 0.15 * r() ** 2;
  return { resid: (1 - ffn) * 0.99, ffn };
}

export interface SynthOptions {
  tokens: string[];
  nLayers: number;
  nHeads: number;
  target: number;
  threshold: number;
  seed?: string;
  parallel?: boolean;
  name?: string;
}

export function synthGraph(o: SynthOptions): Graph {
  const seed = o.seed ?? "synth";
  const T = o.tokens.length;
  const nodes = new Map<string, GNode>();
  const edges: GEdge[] = [];
  const tau = o.threshold;
  const node = (id: string, layer: number, pos: number, kind: GNode["kind"]) => {
    if (!nodes.has(id)) nodes.set(id, { id, layer, pos, kind });
    return id;
  };
  const resid = (index: number, pos: number) => (index === 0 ? node(`x:0:${pos}`, -1, pos, "embed") : node(`x:${index}:${pos}`, index - 1, pos, "block"));
  const target = ((o.target % T) + T) % T;
  resid(o.nLayers, target);
  let frontier = new Set<number>([target]);
  const attention = (layer: number, pos: number, into: string, below: Set<number>) => {
    const row = attnRow(seed, layer, pos, o.nHeads);
    if (row.resid > tau) {
      edges.push({ source: resid(layer, pos), target: into, kind: "resid", weight: row.resid });
      below.add(pos);
    }
    for (const [j, hw] of [...row.sources].sort((a, b) => a[0] - b[0])) {
      const w = hw.reduce((a, b) => a + b, 0);
      if (w > tau) {
        const heads: Record<string, number> = {};
        hw.forEach((x, k) => {
          if (x > 0) heads[String(k)] = x;
        });
        edges.push({ source: resid(layer, j), target: into, kind: "attn", weight: w, heads });
        below.add(j);
      }
    }
  };
  for (let layer = o.nLayers - 1; layer >= 0 && frontier.size; layer--) {
    const below = new Set<number>();
    const mids: number[] = [];
    for (const pos of [...frontier].sort((a, b) => a - b)) {
      const out = `x:${layer + 1}:${pos}`;
      const f = ffnRow(seed, layer, pos);
      if (o.parallel) {
        attention(layer, pos, out, below);
        if (f.ffn > tau) {
          const fid = node(`f:${layer}:${pos}`, layer, pos, "ffn");
          edges.push({ source: resid(layer, pos), target: fid, kind: "ffn", weight: f.ffn });
          edges.push({ source: fid, target: out, kind: "ffn", weight: f.ffn });
          below.add(pos);
        }
        continue;
      }
      const mid = `a:${layer}:${pos}`;
      let keep = false;
      if (f.resid > tau) {
        node(mid, layer, pos, "attn");
        edges.push({ source: mid, target: out, kind: "resid", weight: f.resid });
        keep = true;
      }
      if (f.ffn > tau) {
        node(mid, layer, pos, "attn");
        const fid = node(`f:${layer}:${pos}`, layer, pos, "ffn");
        edges.push({ source: mid, target: fid, kind: "ffn", weight: f.ffn });
        edges.push({ source: fid, target: out, kind: "ffn", weight: f.ffn });
        keep = true;
      }
      if (keep) mids.push(pos);
    }
    for (const pos of mids) attention(layer, pos, `a:${layer}:${pos}`, below);
    frontier = below;
  }
  return {
    schema: "routelens.graph/1",
    model: { name: o.name ?? "synthetic", n_layers: o.nLayers, n_heads: o.nHeads, d_model: 576, vocab: 49152 },
    tokens: o.tokens,
    target: { pos: target, token: null },
    threshold: tau,
    norm: "l1",
    nodes: [...nodes.values()],
    edges,
  };
}

const WORDS = (
  "the of and to in is was for on that with as by at from it an be this are or his her which " +
  "Paris London France capital city river model route token layer head neuron graph attention " +
  "green blue red small large first last new old one two three time year people world"
).split(" ");

export function synthTokens(n: number, seed = "tokens"): string[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => (i === 0 ? "<s>" : (r() < 0.85 ? " " : "") + WORDS[Math.floor(r() * WORDS.length)]));
}

export function synthWord(r: () => number): string {
  return (r() < 0.8 ? " " : "") + WORDS[Math.floor(r() * WORDS.length)];
}
