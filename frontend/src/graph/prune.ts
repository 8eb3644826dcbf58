// Local re-pruning of a route graph (docs/api.md): the graph is fetched once at the slider's
// minimum threshold; for a higher threshold tau keep, from the target node(s), every incoming
// edge with weight > tau, walking down from kept nodes. An FFN node is kept when its edge into
// the block node is kept (it is the source of that edge, so the walk handles it).

import type { EdgeKind, GEdge, GNode, Graph, NodeKind } from "../types";

export interface PNode extends GNode {
  idx: number;
}

export interface PEdge extends GEdge {
  idx: number;
  s: number; // source node index
  t: number; // target node index
  key: string;
}

export interface Prepared {
  graph: Graph;
  nodes: PNode[];
  edges: PEdge[]; // sorted by weight, ascending (the draw order: strongest on top)
  byId: Map<string, number>;
  byKey: Map<string, number>;
  incoming: Int32Array[]; // per node: edge indices, weight descending
  outgoing: Int32Array[];
  roots: number[];
  nLayers: number;
  parallel: boolean;
}

export interface Pruned {
  tau: number;
  node: Uint8Array;
  edge: Uint8Array;
  nodeList: number[];
  edgeList: number[]; // ascending by weight
  counts: Record<EdgeKind | NodeKind, number>;
}

export function edgeKey(e: { kind: string; source: string; target: string }): string {
  return `${e.kind}|${e.source}|${e.target}`;
}

export function parseEdgeKey(key: string): { kind: EdgeKind; source: string; target: string } | null {
  const parts = key.split("|");
  if (parts.length !== 3) return null;
  return { kind: parts[0] as EdgeKind, source: parts[1], target: parts[2] };
}

export function prepare(graph: Graph, nLayers: number, parallelHint?: boolean): Prepared {
  const nodes: PNode[] = graph.nodes.map((n, idx) => ({ ...n, idx }));
  const byId = new Map<string, number>();
  nodes.forEach((n) => byId.set(n.id, n.idx));
  const raw = graph.edges.filter((e) => byId.has(e.source) && byId.has(e.target));
  raw.sort((a, b) => a.weight - b.weight);
  const edges: PEdge[] = raw.map((e, idx) => ({ ...e, idx, s: byId.get(e.source)!, t: byId.get(e.target)!, key: edgeKey(e) }));
  const byKey = new Map<string, number>();
  edges.forEach((e) => byKey.set(e.key, e.idx));
  const inc: number[][] = nodes.map(() => []);
  const out: number[][] = nodes.map(() => []);
  // edges are ascending, so walking them backwards gives descending lists
  for (let i = edges.length - 1; i >= 0; i--) {
    inc[edges[i].t].push(i);
    out[edges[i].s].push(i);
  }
  const L = graph.model?.n_layers ?? nLayers;
  const positions = graph.target.positions ?? (graph.target.pos !== null && graph.target.pos !== undefined ? [graph.target.pos] : []);
  let roots = positions.map((p) => byId.get(`x:${L}:${p}`)).filter((x): x is number => x !== undefined);
  if (!roots.length) {
    // fall back to the top-most block nodes with no outgoing edges
    roots = nodes.filter((n) => n.kind === "block" && n.layer === L - 1 && out[n.idx].length === 0).map((n) => n.idx);
  }
  const parallel =
    parallelHint ?? (!nodes.some((n) => n.kind === "attn") && edges.some((e) => e.kind === "ffn" && e.source.startsWith("x:")));
  return {
    graph,
    nodes,
    edges,
    byId,
    byKey,
    incoming: inc.map((a) => Int32Array.from(a)),
    outgoing: out.map((a) => Int32Array.from(a)),
    roots,
    nLayers: L,
    parallel,
  };
}

/** The route above threshold tau: from the target node(s), every incoming edge with weight >
 * tau, walking down from kept nodes (pruneWalk). Computed from keepUntil (once per graph), so a
 * threshold change is one pass over typed arrays. */
export function prune(p: Prepared, tau: number): Pruned {
  const ku = keepUntilOf(p);
  const node = new Uint8Array(p.nodes.length);
  const edge = new Uint8Array(p.edges.length);
  const kn = ku.node;
  const ke = ku.edge;
  for (let i = 0; i < node.length; i++) node[i] = tau < kn[i] ? 1 : 0;
  for (let i = 0; i < edge.length; i++) edge[i] = tau < ke[i] ? 1 : 0;
  return lists(p, tau, node, edge);
}

const kuCache = new WeakMap<Prepared, { edge: Float64Array; node: Float64Array }>();

/** keepUntil(p), computed once per prepared graph. */
export function keepUntilOf(p: Prepared): { edge: Float64Array; node: Float64Array } {
  let ku = kuCache.get(p);
  if (!ku) kuCache.set(p, (ku = keepUntil(p)));
  return ku;
}

/** The pruning rule itself, by walking down from the roots (the reference that keepUntil must
 * agree with; the debug hook's checkPrune() compares the two). */
export function pruneWalk(p: Prepared, tau: number): Pruned {
  const node = new Uint8Array(p.nodes.length);
  const edge = new Uint8Array(p.edges.length);
  const stack: number[] = [];
  for (const r of p.roots) {
    node[r] = 1;
    stack.push(r);
  }
  const edges = p.edges;
  while (stack.length) {
    const n = stack.pop()!;
    const inc = p.incoming[n];
    for (let k = 0; k < inc.length; k++) {
      const e = edges[inc[k]];
      if (!(e.weight > tau)) break; // descending: the rest are lighter
      edge[e.idx] = 1;
      if (!node[e.s]) {
        node[e.s] = 1;
        stack.push(e.s);
      }
    }
  }
  return lists(p, tau, node, edge);
}

function lists(p: Prepared, tau: number, node: Uint8Array, edge: Uint8Array): Pruned {
  const nodeList: number[] = [];
  const edgeList: number[] = [];
  const counts = { attn: 0, resid: 0, ffn: 0, embed: 0, block: 0 } as Record<EdgeKind | NodeKind, number>;
  for (let i = 0; i < node.length; i++)
    if (node[i]) {
      nodeList.push(i);
      counts[p.nodes[i].kind]++;
    }
  for (let i = 0; i < edge.length; i++)
    if (edge[i]) {
      edgeList.push(i);
      counts[p.edges[i].kind]++;
    }
  return { tau, node, edge, nodeList, edgeList, counts };
}

/** The graph JSON of a pruned view, for export (the schema of the graph it came from, /2 or /1; nodes keep their bias shares). */
export function prunedGraph(p: Prepared, pr: Pruned): Graph {
  return {
    ...p.graph,
    threshold: pr.tau,
    nodes: pr.nodeList.map((i) => {
      const { idx: _i, ...n } = p.nodes[i];
      return n;
    }),
    edges: pr.edgeList
      .slice()
      .reverse()
      .map((i) => {
        const { idx: _i, s: _s, t: _t, key: _k, ...e } = p.edges[i];
        return e;
      }),
  };
}

/** Nodes and edges on routes through `start` (down to the embeddings and up to the target). */
export function routeThrough(p: Prepared, pr: Pruned, start: number): { nodes: Set<number>; edges: Set<number> } {
  const nodes = new Set<number>([start]);
  const edges = new Set<number>();
  for (const dir of ["down", "up"] as const) {
    const stack = [start];
    const seen = new Set<number>([start]);
    while (stack.length) {
      const n = stack.pop()!;
      const list = dir === "down" ? p.incoming[n] : p.outgoing[n];
      for (let k = 0; k < list.length; k++) {
        const ei = list[k];
        if (!pr.edge[ei]) continue;
        edges.add(ei);
        const m = dir === "down" ? p.edges[ei].s : p.edges[ei].t;
        nodes.add(m);
        if (!seen.has(m)) {
          seen.add(m);
          stack.push(m);
        }
      }
    }
  }
  return { nodes, edges };
}

/** For every edge and node, the threshold up to which prune() keeps it: prune(p, tau) keeps an
 * edge or node exactly when tau < its value (-1: never, +Infinity: a root). An edge lives while
 * its weight and its target node live; a node while its best outgoing edge does. Pruning is
 * monotone, so ordering elements by this value makes every drawn set a suffix of the order.
 * (A widest-path search from the roots, O(E log E).) */
export function keepUntil(p: Prepared): { edge: Float64Array; node: Float64Array } {
  const node = new Float64Array(p.nodes.length).fill(-1);
  const edge = new Float64Array(p.edges.length).fill(-1);
  const done = new Uint8Array(p.nodes.length);
  // max-heap of [value, node]
  const hv: number[] = [];
  const hn: number[] = [];
  const push = (v: number, n: number) => {
    let i = hv.length;
    hv.push(v);
    hn.push(n);
    while (i > 0) {
      const j = (i - 1) >> 1;
      if (hv[j] >= v) break;
      hv[i] = hv[j];
      hn[i] = hn[j];
      i = j;
    }
    hv[i] = v;
    hn[i] = n;
  };
  const pop = (): number => {
    const top = hn[0];
    const v = hv.pop()!;
    const n = hn.pop()!;
    const len = hv.length;
    if (len) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= len) break;
        if (c + 1 < len && hv[c + 1] > hv[c]) c++;
        if (hv[c] <= v) break;
        hv[i] = hv[c];
        hn[i] = hn[c];
        i = c;
      }
      hv[i] = v;
      hn[i] = n;
    }
    return top;
  };
  for (const r of p.roots) {
    node[r] = Infinity;
    push(Infinity, r);
  }
  while (hv.length) {
    const n = pop();
    if (done[n]) continue;
    done[n] = 1;
    const cap = node[n];
    const inc = p.incoming[n];
    for (let k = 0; k < inc.length; k++) {
      const e = p.edges[inc[k]];
      const w = e.weight > -1 ? e.weight : -1; // NaN: never kept
      const v = w < cap ? w : cap;
      edge[e.idx] = v;
      if (v > node[e.s] && !done[e.s]) {
        node[e.s] = v;
        push(v, e.s);
      }
    }
  }
  return { edge, node };
}
