// Shapes of the "asking why" answers (docs/api.md "Asking why", docs/contrastive.md, docs/verify.md).

/** A contrastive route's target (graph.target with a foil). */
export interface ContrastTarget {
  pos: number | null;
  token?: string | null;
  token_id?: number;
  foil?: string | null;
  foil_id?: number | null;
  logit_diff?: number;
  definition?: string;
}

/** GET /attribution: every head, attention bias and FFN write of every layer, signed, in logits. */
export interface Attribution {
  pos: number;
  token: string;
  token_id: number;
  foil: string | null;
  foil_id: number | null;
  embed: number;
  constant: number;
  layers: { layer: number; heads: number[]; attn_bias: number; ffn: number }[];
  total: number;
  logit_diff: number;
}

/** One neuron of /ffn's `attribution` (by |DLA|). */
export interface NeuronDla {
  neuron: string;
  index: number;
  dla: number;
  activation: number;
  importance: number;
}

export interface VerifyRun {
  prob: number;
  logit: number;
  /** logit[token] - logit[foil]: a contrastive route's runs only. */
  diff?: number;
  removed_weight?: number;
  removed_edges?: number;
  kept_edges?: number;
}

/** GET /verify: one report (docs/verify.md "Report fields"). */
export interface VerifyReport {
  target: { pos: number; token: string; token_id: number; foil?: string | null; foil_id?: number | null };
  threshold: number;
  renormalise: boolean;
  seed: number;
  full: VerifyRun;
  route: VerifyRun;
  random: VerifyRun[];
  random_mean: { prob: number; logit: number; diff?: number };
  shares: { prob: number | null; logit: number | null };
  /** What the verdict compares: the token's probability, or a contrastive route's logit difference. */
  measure: "prob" | "diff";
  beats_random: boolean;
  total_weight?: number;
  total_edges?: number;
}
