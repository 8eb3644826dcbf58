// The dataset analyses' API (docs/api.md "Dataset analyses"): the list, one analysis, a head's prompts.

/** A line of GET /api/analyses. */
export interface AnalysisSummary {
  name: string;
  model: string | null;
  n_prompts: number;
  labels: string[];
  positions: string | null;
  threshold: number | null;
  norm?: number;
  dataset?: string;
  /** Why the folder cannot be read, or null. */
  error: string | null;
}

/** [layers][heads] for all prompts and per label. */
export interface PerLabel {
  all: number[][];
  labels: Record<string, number[][]>;
}

export interface HeadScore {
  layer: number;
  head: number;
  score: number;
  elsewhere?: number;
}

export interface LabelDifference {
  label: string;
  kind: "head" | "ffn" | "neuron";
  layer: number;
  index: number | null;
  in_label: number;
  rest: number;
  difference: number;
}

/** GET /api/analysis/{name}. */
export interface AnalysisResp {
  name: string;
  meta: { spec: { model: string; dataset: string; positions: string; threshold: number; norm?: number }; n_prompts: number };
  labels: string[];
  heads: PerLabel;
  frequency: PerLabel;
  previous_token: number[][];
  previous_token_heads: HeadScore[];
  subword_merging_heads: HeadScore[];
  label_differences: LabelDifference[];
}

/** A prompt where a head mattered most (GET /api/analysis/{name}/head). */
export interface HeadPrompt {
  importance: number;
  prompt: number;
  pos: number;
  text: string;
  label: string;
}

export interface HeadPromptsResp {
  layer: number;
  head: number;
  prompts: HeadPrompt[];
}

export type Measure = "mean" | "frequency";
