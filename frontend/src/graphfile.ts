// Reading a route-graph JSON (routelens.graph/2 or /1, docs/graph-format.md) that did not come from the
// server: a file opened in the web app, or a graph handed to the standalone viewer. Anything
// that is not a graph this version can draw is refused with a message that says what it got,
// what this version reads, and what to do.

import type { EdgeKind, Graph, NodeKind } from "./types";

export const GRAPH_SCHEMA = "routelens.graph/2";
/** Every version this one reads: /1 is /2 without the nodes' bias shares. */
export const GRAPH_SCHEMAS: readonly string[] = ["routelens.graph/1", GRAPH_SCHEMA];

const HOW_TO_EXPORT = "the web app's JSON export, `routelens trace MODEL PROMPT --out graph.json`, or graph.to_dict() in Python";

export class GraphFileError extends Error {
  constructor(
    message: string,
    readonly code: "not_json" | "unsupported_schema" | "invalid_graph",
  ) {
    super(message);
    this.name = "GraphFileError";
  }
}

/** Parse the text of a file; `name` is how the message calls it (e.g. the file name). */
export function parseGraphText(text: string, name = "The file"): Graph {
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (err) {
    throw new GraphFileError(
      `${name} is not JSON (${(err as Error).message}). Open a route-graph JSON file written by routelens: ${HOW_TO_EXPORT}.`,
      "not_json",
    );
  }
  return checkGraph(data, name);
}

const NODE_KINDS: readonly NodeKind[] = ["embed", "attn", "ffn", "block"];
const EDGE_KINDS: readonly EdgeKind[] = ["attn", "resid", "ffn"];

const isObj = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);
const isInt = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x);
const show = (x: unknown): string => {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : s.length > 40 ? s.slice(0, 39) + "…" : s;
};

/** Check that `data` is a routelens.graph/2 (or /1) graph the drawing code can use; return it typed. */
export function checkGraph(data: unknown, name = "The graph"): Graph {
  if (!isObj(data)) {
    throw new GraphFileError(
      `${name} holds JSON ${Array.isArray(data) ? "array" : typeof data === "object" ? "null" : typeof data}, not a route graph: this version of routelens reads route-graph objects with "schema": "${GRAPH_SCHEMA}". Open a file written by ${HOW_TO_EXPORT}.`,
      "invalid_graph",
    );
  }
  const schema = data.schema;
  if (typeof schema !== "string" || !GRAPH_SCHEMAS.includes(schema)) {
    const got = schema === undefined ? `no "schema" field` : `"schema": ${show(schema)}`;
    const todo =
      typeof schema === "string" && schema.startsWith("routelens.graph/")
        ? `It was written by a different version of routelens: open it with that version, or export the graph again with this one (${HOW_TO_EXPORT}).`
        : `It does not look like a routelens route graph: open a file written by ${HOW_TO_EXPORT}.`;
    throw new GraphFileError(`${name} has ${got}; this version of routelens reads "${GRAPH_SCHEMA}" and the older "${GRAPH_SCHEMAS[0]}" only. ${todo}`, "unsupported_schema");
  }
  const bad = (what: string) => new GraphFileError(`${name} is not a valid ${schema} graph: ${what}. Export it again with routelens (${HOW_TO_EXPORT}).`, "invalid_graph");
  const model = data.model;
  if (!isObj(model)) throw bad(`"model" is missing or not an object`);
  if (!isInt(model.n_layers) || model.n_layers < 1) throw bad(`model.n_layers is ${show(model.n_layers)} (expected a whole number >= 1)`);
  const tokens = data.tokens;
  if (!Array.isArray(tokens) || tokens.length === 0) throw bad(`"tokens" is missing or empty`);
  const tk = tokens.findIndex((t) => typeof t !== "string");
  if (tk >= 0) throw bad(`tokens[${tk}] is ${show(tokens[tk])} (expected a string)`);
  const T = tokens.length;
  const target = data.target;
  if (!isObj(target)) throw bad(`"target" is missing or not an object`);
  if (target.pos !== null && target.pos !== undefined && (!isInt(target.pos) || target.pos < 0 || target.pos >= T)) {
    throw bad(`target.pos is ${show(target.pos)} (expected a position from 0 to ${T - 1}, or null)`);
  }
  if (target.positions !== undefined && (!Array.isArray(target.positions) || target.positions.some((p) => !isInt(p) || p < 0 || p >= T))) {
    throw bad(`target.positions is ${show(target.positions)} (expected positions from 0 to ${T - 1})`);
  }
  const th = data.threshold;
  if (typeof th !== "number" || !Number.isFinite(th) || th < 0 || th > 1) throw bad(`"threshold" is ${show(th)} (expected a number from 0 to 1)`);
  const nodes = data.nodes;
  if (!Array.isArray(nodes)) throw bad(`"nodes" is missing or not a list`);
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    if (!isObj(n)) throw bad(`nodes[${i}] is not an object`);
    if (typeof n.id !== "string") throw bad(`nodes[${i}].id is ${show(n.id)} (expected a string)`);
    if (!NODE_KINDS.includes(n.kind as NodeKind)) throw bad(`nodes[${i}].kind is ${show(n.kind)} (expected ${NODE_KINDS.join(", ")})`);
    if (!isInt(n.layer) || n.layer < -1) throw bad(`nodes[${i}].layer is ${show(n.layer)} (expected a whole number >= -1)`);
    if (!isInt(n.pos) || n.pos < 0 || n.pos >= T) throw bad(`nodes[${i}].pos is ${show(n.pos)} (expected a position from 0 to ${T - 1})`);
    if (n.bias !== undefined && (typeof n.bias !== "number" || !Number.isFinite(n.bias) || n.bias < 0 || n.bias > 1.000001)) {
      throw bad(`nodes[${i}].bias is ${show(n.bias)} (expected a share from 0 to 1)`);
    }
  }
  const edges = data.edges;
  if (!Array.isArray(edges)) throw bad(`"edges" is missing or not a list`);
  for (let i = 0; i < edges.length; i++) {
    const e = edges[i];
    if (!isObj(e)) throw bad(`edges[${i}] is not an object`);
    if (typeof e.source !== "string" || typeof e.target !== "string") throw bad(`edges[${i}] has no string "source" and "target"`);
    if (!EDGE_KINDS.includes(e.kind as EdgeKind)) throw bad(`edges[${i}].kind is ${show(e.kind)} (expected ${EDGE_KINDS.join(", ")})`);
    if (typeof e.weight !== "number" || !Number.isFinite(e.weight)) throw bad(`edges[${i}].weight is ${show(e.weight)} (expected a number)`);
    if (e.heads !== undefined && e.heads !== null && !isObj(e.heads)) throw bad(`edges[${i}].heads is not an object`);
  }
  return data as unknown as Graph;
}

/** The target position of a graph (its first one when it has several), or -1. */
export function targetPos(g: Graph): number {
  const t = g.target;
  if (t.pos !== null && t.pos !== undefined) return t.pos;
  return t.positions?.[0] ?? -1;
}

/** The target a graph was drawn for: its position, or "all" when it holds every position's
 * route (no pos, but positions: the web app's all-positions view, the API's target=all). */
export function fileTarget(g: Graph): number | "all" {
  const t = g.target;
  const T = g.tokens.length;
  if (t.pos !== null && t.pos !== undefined) return t.pos >= 0 && t.pos < T ? t.pos : T - 1;
  if (t.positions?.length) return "all";
  return T - 1;
}
