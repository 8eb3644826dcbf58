// One layer numbering for every label the user reads (graph axis, tooltips, panels, exports):
// "L<l>" is block l, counted from 0 as in transformers' `model.layers[l]` and TransformerLens's
// `blocks.<l>`. A node is named by the block that wrote it and where in the block it sits
// ("L3 attn" after attention, "L3 FFN", "L3 out" after the whole block, "emb" the embedding); an
// edge by the block that computes it and its two ends ("L4: L3 out → L4 attn"). Node ids keep the
// residual-stream index (`x:4:i` is the stream after block 3); they are opaque and never shown as
// a layer (docs/graph-format.md).

import type { NodeKind } from "./types";

/** "L<l>" for a block, "emb" for the embedding (layer -1). */
export function layerName(layer: number): string {
  return layer < 0 ? "emb" : `L${layer}`;
}

/** Where a node sits: "emb", "L<l> attn", "L<l> FFN" or "L<l> out". */
export function nodePlace(kind: NodeKind | string, layer: number): string {
  if (kind === "embed" || layer < 0) return "emb";
  if (kind === "attn") return `L${layer} attn`;
  if (kind === "ffn") return `L${layer} FFN`;
  return `L${layer} out`;
}

/** The block an edge belongs to (its target node's) and its two ends: "L4: L3 out → L4 attn". */
export function edgePlace(source: { kind: string; layer: number }, target: { kind: string; layer: number }): string {
  return `${layerName(target.layer)}: ${nodePlace(source.kind, source.layer)} → ${nodePlace(target.kind, target.layer)}`;
}
