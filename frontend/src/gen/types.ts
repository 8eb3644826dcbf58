// Shapes of the "asking why" answers the web app reads (docs/api.md "Asking why"): a generated
// continuation (POST /api/trace with `generate`) and a comparison of two prompts (POST /api/compare).

import type { Graph } from "../types";

export interface GenStep {
  /** 0-based: the k-th generated token. */
  step: number;
  /** The position whose prediction was this token (prompt_length - 1 + step). */
  pos: number;
  token: string;
  token_id: number;
  prob: number;
  /** Its rank among the model's predictions there (a sampled token may not be 0). */
  rank: number;
}

export interface Generation {
  prompt_length: number;
  steps: GenStep[];
  sampled: boolean;
  seed: number | null;
  temperature: number;
}

/** A head or a neuron whose importance changed between the two routes. */
export interface CompareRow {
  layer: number;
  head?: number;
  neuron?: number;
  a: number;
  b: number;
  delta: number;
  activation_a?: number | null;
  activation_b?: number | null;
}

export interface CompareResp {
  graph: Graph & {
    compare?: {
      prompts: [string, string];
      alignment: { a: number | null; b: number | null; token_a: string | null; token_b: string | null; same: boolean }[];
      targets: { pos: number; input: string; prediction: string }[];
      definition?: string;
    };
  };
  heads: CompareRow[];
  neurons: CompareRow[];
}
