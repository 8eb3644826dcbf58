// Shapes of the JSON API (docs/api.md) and of the route-graph format (routelens.graph/1).

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
}

export interface TraceResp {
  trace_id: string;
  model: string;
  facts?: Facts;
  tokens: string[];
  token_ids?: number[];
  n_layers: number;
  n_heads: number;
  parallel?: boolean;
  predictions: Prediction[][];
  timings?: Record<string, number | boolean | string>;
}

export type NodeKind = "embed" | "attn" | "ffn" | "block";
export type EdgeKind = "attn" | "resid" | "ffn";

export interface GNode {
  id: string;
  layer: number;
  pos: number;
  kind: NodeKind;
  degenerate?: boolean;
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
}

export interface Effect {
  token: string;
  id: number;
  effect: number;
}

export interface NodeInfo {
  top_tokens: TopToken[];
  promoted: Effect[];
  suppressed: Effect[];
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
