// Shapes of the JSON API (docs/api.md) and of the route-graph format (routelens.graph/2; /1 is
// the same without the nodes' bias shares, docs/graph-format.md).

export interface Config {
  demo_mode: boolean;
  debug: boolean;
  default_model: string;
  models: string[];
  allow_custom_models: boolean;
  allow_loading_dataset_files: boolean;
  max_user_string_length: number;
  prompts: string[];
  default_threshold: number;
  min_threshold?: number; // the lowest threshold the server draws (demo mode), absent from older servers
  max_generate_tokens?: number; // tokens one trace may generate (0: none), absent from older servers
}

export interface Facts {
  name?: string;
  family?: string;
  model_type?: string;
  n_layers?: number;
  n_heads?: number;
  n_kv_heads?: number;
  d_model?: number;
  head_dim?: number;
  vocab?: number;
  parameters?: number;
  context_length?: number;
  device?: string;
  dtype?: string;
  parallel_blocks?: boolean;
  [key: string]: unknown;
}

export type LoadState = "absent" | "loading" | "ready" | "error";

export interface ModelStatus {
  model: string;
  state: LoadState;
  stage?: string;
  elapsed?: number;
  message?: string;
  facts?: Facts | null;
}

export interface Prediction {
  token: string;
  id: number;
  prob: number;
  bytes?: string; // the token's bytes as hex ("e697"); `token` shows a piece of a character as "<E6 97>"
}

export interface TraceResp {
  trace_id: string;
  model: string;
  facts?: Facts;
  tokens: string[];
  token_bytes?: string[]; // each token's bytes as hex, beside its label in `tokens`
  token_ids?: number[];
  n_layers: number;
  n_heads: number;
  parallel?: boolean;
  predictions: Prediction[][];
  timings?: Record<string, number | boolean | string>;
  /** What the server estimated before the run, and what it measured (estimate.ts); an older server sends neither. */
  estimate?: import("./estimate").Estimate | null;
  measured?: import("./estimate").Measured | null;
  /** A generated continuation's steps (POST /api/trace with `generate`; gen/types.ts). */
  generation?: import("./gen/types").Generation | null;
}

export type NodeKind = "embed" | "attn" | "ffn" | "block";
export type EdgeKind = "attn" | "resid" | "ffn";

export interface GNode {
  id: string;
  layer: number;
  pos: number;
  kind: NodeKind;
  degenerate?: boolean;
  /** attn and block nodes (/2): the share of the node no incoming edge carries (the attention
   * output bias b_O; 0 for a sequential block's output). Edges in + bias = 1 before pruning. */
  bias?: number;
}

export interface GEdge {
  source: string;
  target: string;
  kind: EdgeKind;
  weight: number;
  heads?: Record<string, number>;
}

export interface Graph {
  schema: string;
  model: { name: string; n_layers: number; n_heads: number; d_model: number; vocab: number; [k: string]: unknown };
  tokens: string[];
  token_bytes?: string[]; // optional: each token's bytes as hex
  target: { pos: number | null; token?: string | null; positions?: number[] };
  threshold: number;
  norm?: string;
  nodes: GNode[];
  edges: GEdge[];
}

export interface TopToken {
  token: string;
  id: number;
  prob: number;
  rank: number;
  rank_change: number | null;
  bytes?: string;
}

export interface Effect {
  token: string;
  id: number;
  effect: number;
  bytes?: string;
}

export interface NodeInfo {
  top_tokens: TopToken[];
  promoted: Effect[];
  suppressed: Effect[];
  bias?: number | null; // the node's bias share (null for an embedding)
}

export interface EdgeInfo {
  weight: number;
  heads: { head: number; weight: number }[];
}

export interface HeadInfo {
  pattern: number[][];
  contributions: number[][];
  promoted: Effect[];
  suppressed: Effect[];
}

export interface Neuron {
  neuron: string;
  index: number;
  importance: number;
  activation: number;
  promoted?: Effect[];
  suppressed?: Effect[];
}

export interface FfnInfo {
  neurons: Neuron[];
  all: { promoted: Effect[]; suppressed: Effect[] };
}

export interface Effects {
  promoted: Effect[];
  suppressed: Effect[];
}

/** What is selected in the graph: a node (by id) or an edge (by key, see edgeKey). */
export type Selection = { type: "node"; id: string } | { type: "edge"; key: string };
