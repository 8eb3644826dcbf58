// The selection (a node or an attention edge): the graph marks it, the inspector shows its panel,
// the URL keeps it. ↑ / ↓ walk it along its token column.

import { canonicalSelection } from "../panels/offline";
import { $view, setView } from "../state";
import type { Selection } from "../types";
import type { App } from "./app";

export function select(app: App, sel: Selection | null): void {
  sel = canonicalSelection(sel);
  if (JSON.stringify(sel) === JSON.stringify($view.get().sel)) return;
  setView({ sel, head: null, neuron: null });
  app.view.setSelection(sel);
  app.inspector.render();
}

/** Up / down: the next node of the drawn route in the same column. */
export function moveSelection(app: App, dir: 1 | -1): boolean {
  const sel = $view.get().sel;
  if (sel?.type !== "node" || !app.prepared || !app.pruned) return false;
  const p = app.prepared;
  const cur = p.byId.get(sel.id);
  if (cur === undefined) return false;
  const level = (i: number) => {
    const n = p.nodes[i];
    if (n.kind === "embed") return -1;
    return n.layer * 3 + (n.kind === "attn" ? 0 : n.kind === "ffn" ? 1 : 2);
  };
  const pos = p.nodes[cur].pos;
  const col = app.pruned.nodeList.filter((i) => p.nodes[i].pos === pos).sort((a, b) => level(a) - level(b));
  const next = col[col.indexOf(cur) + dir];
  if (next === undefined) return false;
  select(app, { type: "node", id: p.nodes[next].id });
  return true;
}
