// What the drawing shows, shared by the view's parts: the prepared graph, its layout, the drawn
// (pruned) route, the tokens and the target column(s).

import type { Prediction } from "../types";
import type { Layout } from "./layout";
import type { Prepared, Pruned } from "./prune";

export class Scene {
  p: Prepared | null = null;
  layout: Layout | null = null;
  pr: Pruned | null = null;
  tokens: string[] = [];
  predictions: Prediction[][] = [];
  /** The target position, or -1: a route to every position (each root's column is a target). */
  targetPos = -1;
  /** Per token column: 1 where a target is. */
  targetCols = new Uint8Array(0);
  /** The target columns, ascending. */
  targets: number[] = [];
  /** Bumped when node positions change (a new graph or layout): cached geometry is stale. */
  geomVersion = 0;

  setTargets(): void {
    const T = this.tokens.length;
    const cols = new Uint8Array(T);
    if (this.targetPos >= 0) {
      if (this.targetPos < T) cols[this.targetPos] = 1;
    } else if (this.p) {
      for (const r of this.p.roots) {
        const pos = this.p.nodes[r].pos;
        if (pos >= 0 && pos < T) cols[pos] = 1;
      }
    }
    this.targetCols = cols;
    this.targets = [];
    for (let i = 0; i < T; i++) if (cols[i]) this.targets.push(i);
  }

  /** The block output at the top of a target column: where a route starts. */
  isTarget(i: number): boolean {
    const n = this.p!.nodes[i];
    return n.kind === "block" && n.layer === this.p!.nLayers - 1 && this.targetCols[n.pos] === 1;
  }

  private usedFor: Pruned | null = null;
  private used = new Uint8Array(0);

  /** Per token column: 1 where the drawn route has a node (cached per drawn route); null before
   * the first drawing. The axes, the minimap and the export read it. */
  routeColumns(): Uint8Array | null {
    const { p, pr } = this;
    if (!p || !pr) return null;
    if (this.usedFor !== pr) {
      const u = new Uint8Array(this.tokens.length);
      for (const i of pr.nodeList) u[p.nodes[i].pos] = 1;
      this.used = u;
      this.usedFor = pr;
    }
    return this.used;
  }

  /** Drawn now (the canvas shows it); the hook's data-testid may lag while the hooks catch up. */
  drawnE(i: number): boolean {
    return !!this.pr && i >= 0 && this.pr.edge[i] === 1;
  }

  drawnN(i: number): boolean {
    return !!this.pr && i >= 0 && this.pr.node[i] === 1;
  }
}
