// Hover, highlight and selection: the hook under the pointer lights its route (a node: the route
// through it, down to the embeddings and up to the target; an edge: itself and its ends) and
// shows its tooltip; the selection gets a ring (node) or an orange stroke (edge). The canvas
// paints all of it (paint.ts reads this as its Lit state).

import type { Selection } from "../types";
import type { Hooks } from "./hooks";
import type { Lit } from "./paint";
import { routeThrough } from "./prune";
import type { Scene } from "./scene";
import type { Tooltip } from "./tooltip";

export class Hover implements Lit {
  focusOn = false;
  hlEdges = new Set<number>();
  hlNodes = new Set<number>();
  selEdge = -1;
  selNode = -1;
  hoverNode = -1;
  selection: Selection | null = null;
  private selected: Element | null = null;
  private hoverEl: Element | null = null;

  constructor(
    private s: Scene,
    private hooks: Hooks,
    private tip: Tooltip,
    private root: SVGSVGElement,
    private repaint: () => void,
    /** The selection's positions may have changed (the axes mark them). */
    private onSelection: () => void,
  ) {}

  /** A new graph: nothing lit, selected or hovered. */
  reset(): void {
    this.selected = null;
    this.selEdge = -1;
    this.selNode = -1;
    this.hlNodes.clear();
    this.hlEdges.clear();
    this.focusOn = false;
    this.hoverEl = null;
    this.hoverNode = -1;
    this.tip.hide();
    this.root.classList.remove("focus");
  }

  setSelection(sel: Selection | null): void {
    this.selection = sel;
    this.apply();
    this.onSelection();
  }

  /** Token positions of the selection: a node's, an edge's source and target. */
  positions(): number[] {
    const p = this.s.p;
    const sel = this.selection;
    if (!p || !sel) return [];
    if (sel.type === "node") {
      const i = p.byId.get(sel.id);
      return i === undefined ? [] : [p.nodes[i].pos];
    }
    const i = p.byKey.get(sel.key);
    if (i === undefined) return [];
    const e = p.edges[i];
    return [p.nodes[e.t].pos, p.nodes[e.s].pos];
  }

  private elementOf(sel: Selection | null): Element | null {
    const p = this.s.p;
    if (!sel || !p) return null;
    if (sel.type === "node") {
      const i = p.byId.get(sel.id);
      return i !== undefined && this.s.drawnN(i) ? this.hooks.nodeEl[i] ?? null : null;
    }
    const i = p.byKey.get(sel.key);
    return i !== undefined && this.s.drawnE(i) ? this.hooks.edgeEl[i] ?? null : null;
  }

  /** Mark the selection's hook (it may appear or go with a threshold change). */
  apply(): void {
    const el = this.elementOf(this.selection);
    if (el === this.selected) return;
    if (this.selected) this.selected.classList.remove("sel");
    if (el) el.classList.add("sel");
    this.selected = el;
    const isEdge = !!el && this.hooks.isEdgeHook(el);
    const selE = el && isEdge ? this.hooks.indexOf(el) ?? -1 : -1;
    const selN = el && !isEdge ? this.hooks.indexOf(el) ?? -1 : -1;
    if (selE !== this.selEdge || selN !== this.selNode) {
      this.selEdge = selE;
      this.selNode = selN;
      this.repaint();
    }
  }

  /** Whether a hook element stands for a node or edge drawn now. */
  isDrawnHook(el: Element): boolean {
    const i = this.hooks.indexOf(el);
    if (i === undefined) return false;
    return this.hooks.edgeEl[i] === el ? this.s.drawnE(i) : this.hooks.nodeEl[i] === el && this.s.drawnN(i);
  }

  /** The drawn hook under a pointer event: its target, or where that is the hook of a pruned
   * node or edge (they stay in the DOM, under the drawn ones of their group but over the edges
   * when nodes), the first drawn hook at that point. "Drawn" is the route on the canvas, not the
   * data-testid (which lags behind it while the hooks catch up after a change). */
  hookAt(e: MouseEvent): Element | null {
    const target = e.target as Element;
    if (this.hooks.indexOf(target) === undefined) return null;
    if (this.isDrawnHook(target)) return target;
    for (const x of document.elementsFromPoint(e.clientX, e.clientY)) {
      if (x === this.root) break;
      if (this.isDrawnHook(x)) return x;
    }
    return null;
  }

  over(e: PointerEvent, frozen: boolean): void {
    if (frozen || e.shiftKey) return;
    const el = this.hookAt(e);
    if (el !== this.hoverEl) this.setHover(el, e);
  }

  setHover(el: Element | null, e?: PointerEvent): void {
    this.hoverEl = el;
    this.hoverNode = -1;
    this.clear();
    const { p, pr } = this.s;
    if (!el || !p || !pr) {
      this.tip.hide();
      return;
    }
    const idx = this.hooks.indexOf(el);
    if (idx === undefined) return;
    if (!this.hooks.isEdgeHook(el)) {
      this.hoverNode = idx;
      const r = routeThrough(p, pr, idx);
      this.highlight(r.nodes, r.edges);
      this.tip.show(this.tip.node(idx), e);
    } else {
      const edge = p.edges[idx];
      this.highlight(new Set([edge.s, edge.t]), new Set([idx]));
      this.tip.show(this.tip.edge(idx), e);
    }
  }

  /** Light an edge or a node from outside (a panel row). */
  external(ref: { edge?: string; node?: string } | null): void {
    const { p, pr } = this.s;
    if (!p || !pr) return;
    if (!ref) {
      this.clear();
      return;
    }
    if (ref.edge !== undefined) {
      const i = p.byKey.get(ref.edge);
      if (i === undefined || !this.s.drawnE(i)) return;
      this.clear();
      this.highlight(new Set([p.edges[i].s, p.edges[i].t]), new Set([i]));
    } else if (ref.node !== undefined) {
      const i = p.byId.get(ref.node);
      if (i === undefined || !this.s.drawnN(i)) return;
      this.clear();
      const r = routeThrough(p, pr, i);
      this.highlight(r.nodes, r.edges);
    }
  }

  private highlight(nodes: Set<number>, edges: Set<number>): void {
    this.hlNodes.clear();
    for (const i of nodes) if (this.s.drawnN(i)) this.hlNodes.add(i);
    this.hlEdges.clear();
    for (const i of edges) if (this.s.drawnE(i)) this.hlEdges.add(i);
    this.focusOn = true;
    this.repaint();
    this.root.classList.add("focus");
  }

  clear(): void {
    if (!this.focusOn && !this.root.classList.contains("focus")) return;
    this.hlNodes.clear();
    this.root.classList.remove("focus");
    this.focusOn = false;
    this.hlEdges.clear();
    this.repaint();
  }
}
