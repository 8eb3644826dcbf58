import type { Prepared, Pruned } from "../graph/prune";
import type { WhyCtx } from "../why/panels";

/** What a panel may use: the API (errors already reported), the trace, and the graph view. */
export interface PanelCtx {
  traceId: string;
  tokens: string[];
  nLayers: number;
  nHeads: number;
  parallel: boolean;
  get<T>(path: string): Promise<T>;
  close(): void;
  selectEdge(key: string): void;
  selectNode(id: string): void;
  hover(ref: { edge?: string; node?: string } | null): void;
  graph(): { p: Prepared; pr: Pruned } | null;
  head: number | null;
  setHead(h: number): void;
  neuron: number | null;
  setNeuron(n: number | null): void;
  lensNorm: boolean;
  setLensNorm(on: boolean): void;
  /** Direct logit attribution at the target (why/panels.ts); absent: no live single target. */
  why?: WhyCtx | null;
}

export interface NodeRef {
  id: string;
  kind: "embed" | "attn" | "ffn" | "block";
  layer: number;
  pos: number;
}

/** Node ids of docs/api.md: x:0:i embed, a:l:i attn, f:l:i ffn, x:l+1:i block (layer l). */
export function parseNodeId(id: string): NodeRef | null {
  const m = /^([xaf]):(-?\d+):(\d+)$/.exec(id);
  if (!m) return null;
  const a = Number(m[2]);
  const pos = Number(m[3]);
  if (m[1] === "a") return { id, kind: "attn", layer: a, pos };
  if (m[1] === "f") return { id, kind: "ffn", layer: a, pos };
  return a === 0 ? { id, kind: "embed", layer: -1, pos } : { id, kind: "block", layer: a - 1, pos };
}

/** Id of the node that attention at (layer, pos) writes into. */
export function attnTargetId(layer: number, pos: number, parallel: boolean): string {
  return parallel ? `x:${layer + 1}:${pos}` : `a:${layer}:${pos}`;
}
