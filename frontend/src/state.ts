// The view's state: one nanostores map ($view) that the controls read and subscribe to, and its
// mirror in the URL query string, so a reload or a shared link restores the view:
//   ?model=NAME&prompt=TEXT&chat=1&norm=l2&target=5&threshold=0.04&sel=node:x:12:4&head=3&neuron=812&foil=2869
//   &dataset=NAME (the dataset view of that analysis is open, dataset/)
// target is a position or `all` (every position's route at once); sel is node:<node id> or
// edge:<kind>|<source id>|<target id>.
// Every change of $view writes the URL (a threshold change debounced: the slider writes it after
// the frame is painted). A URL that asks for work and that this tab did not write itself is
// confirmed by the user before anything loads or runs (ui/linkconfirm.ts); meanwhile the URL
// module is held and the link's URL stays.

import { map } from "nanostores";
import type { Selection } from "./types";
import { rememberOwnUrl } from "./ui/linkconfirm";

/** A position, or every position at once. */
export type Target = number | "all";

export interface ViewState {
  model: string;
  /** The prompt of the trace shown (not what is being typed). */
  prompt: string;
  chat: boolean;
  norm: "l1" | "l2";
  target: Target;
  threshold: number;
  sel: Selection | null;
  head: number | null;
  neuron: number | null;
  /** What the graph shows: nothing yet, a live trace, or a graph opened from a file (not in the URL). */
  shown: "none" | "trace" | "file";
  /** The foil token id (why the top token rather than this one), or null: the plain route (why/). */
  foil: number | null;
  /** The trace shown generated this many tokens after the prompt (0: none), greedy or sampled with `seed` (gen/). */
  gen: number;
  sample: boolean;
  seed: number;
  /** The second prompt of the comparison shown ("" : none; compare/). */
  compare: string;
  /** The dataset analysis whose view is open ("": the route view; dataset/). */
  dataset: string;
}

export const $view = map<ViewState>({
  model: "",
  prompt: "",
  chat: false,
  norm: "l1",
  target: -1,
  threshold: 0.04,
  sel: null,
  head: null,
  neuron: null,
  shown: "none",
  foil: null,
  gen: 0,
  sample: false,
  seed: 0,
  compare: "",
  dataset: "",
});

/** Set several keys with one notification (one URL write). */
export function setView(patch: Partial<ViewState>): void {
  $view.set({ ...$view.get(), ...patch });
}

export interface UrlState {
  model?: string;
  prompt?: string;
  chat?: boolean;
  norm?: "l1" | "l2";
  target?: Target;
  threshold?: number;
  sel?: Selection | null;
  head?: number | null;
  neuron?: number | null;
  foil?: number | null;
  gen?: number;
  sample?: boolean;
  seed?: number;
  compare?: string;
  dataset?: string;
}

export function readUrl(): UrlState {
  const q = new URLSearchParams(location.search || location.hash.replace(/^#/, ""));
  const s: UrlState = {};
  const model = q.get("model");
  if (model) s.model = model;
  const prompt = q.get("prompt");
  if (prompt !== null) s.prompt = prompt;
  if (q.has("chat")) s.chat = q.get("chat") === "1" || q.get("chat") === "true";
  const norm = q.get("norm");
  if (norm === "l1" || norm === "l2") s.norm = norm;
  const target = q.get("target");
  if (target === "all") s.target = "all";
  else if (target !== null && target !== "" && Number.isInteger(Number(target))) s.target = Number(target);
  const th = Number(q.get("threshold"));
  if (q.has("threshold") && Number.isFinite(th) && th >= 0 && th <= 1) s.threshold = th;
  const sel = q.get("sel");
  if (sel?.startsWith("node:")) s.sel = { type: "node", id: sel.slice(5) };
  else if (sel?.startsWith("edge:")) s.sel = { type: "edge", key: sel.slice(5) };
  const head = q.get("head");
  if (head !== null && Number.isInteger(Number(head))) s.head = Number(head);
  const neuron = q.get("neuron");
  if (neuron !== null && Number.isInteger(Number(neuron))) s.neuron = Number(neuron);
  const foil = q.get("foil");
  if (foil !== null && foil !== "" && Number.isInteger(Number(foil)) && Number(foil) >= 0) s.foil = Number(foil);
  readMoreUrl(q, s);
  return s;
}

let timer: number | undefined;

export function writeUrl(s: UrlState, debounce = false): void {
  const apply = () => {
    const q = new URLSearchParams();
    if (s.model) q.set("model", s.model);
    if (s.prompt) q.set("prompt", s.prompt);
    if (s.chat) q.set("chat", "1");
    if (s.norm && s.norm !== "l1") q.set("norm", s.norm);
    if (s.target !== undefined && s.prompt) q.set("target", String(s.target));
    if (s.threshold !== undefined) q.set("threshold", String(+s.threshold.toFixed(4)));
    if (s.sel) q.set("sel", s.sel.type === "node" ? `node:${s.sel.id}` : `edge:${s.sel.key}`);
    if (s.sel?.type === "edge" && s.head !== undefined && s.head !== null && s.head !== -1) q.set("head", String(s.head));
    if (s.sel?.type === "node" && s.neuron !== undefined && s.neuron !== null) q.set("neuron", String(s.neuron));
    if (s.foil !== undefined && s.foil !== null) q.set("foil", String(s.foil));
    writeMoreUrl(q, s);
    const search = q.toString();
    const url = location.pathname + (search ? "?" + search : "");
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
    rememberOwnUrl(); // a reload of this URL restores the view without asking (ui/linkconfirm.ts)
  };
  clearTimeout(timer);
  if (debounce) timer = window.setTimeout(apply, 150);
  else apply();
}

/** What of the view goes in the URL: a graph from a file is not there (a reload does not bring it
 * back), and the prompt and target only once a trace is shown. */
export function urlOf(v: ViewState): UrlState {
  const live = v.shown === "trace";
  const file = v.shown === "file";
  return {
    model: v.model,
    prompt: live ? v.prompt : undefined,
    chat: v.chat,
    norm: v.norm,
    target: live ? v.target : undefined,
    threshold: file ? undefined : v.threshold,
    sel: file ? null : v.sel,
    head: v.head,
    neuron: v.neuron,
    foil: live && v.target !== "all" ? v.foil : undefined,
    gen: live ? v.gen : undefined,
    sample: live ? v.sample : undefined,
    seed: live ? v.seed : undefined,
    compare: live ? v.compare : undefined,
    dataset: v.dataset || undefined,
  };
}

// held until the page knows whether the URL it was opened with asks for confirmation
let held = true;

/** Hold the URL as it is (a link waiting for the user's Run or Dismiss), or let the view write it again. */
export function holdUrl(on: boolean): void {
  held = on;
  if (on) clearTimeout(timer);
}

/** Write the view into the URL now (`debounce`: after the frame is painted). */
export function syncUrl(debounce = false): void {
  if (!held) writeUrl(urlOf($view.get()), debounce);
}

// history.replaceState inside a redraw would force the new elements' style before the paint:
// a threshold change alone is written once the slider rests
$view.listen((_v, _old, key) => syncUrl(key === "threshold"));

/** gen=N&sample=1&seed=S (a generated continuation) and compare=<prompt B>. */
function readMoreUrl(q: URLSearchParams, s: UrlState): void {
  const gen = Number(q.get("gen"));
  if (q.has("gen") && Number.isInteger(gen) && gen > 0) s.gen = gen;
  if (q.has("sample")) s.sample = q.get("sample") === "1" || q.get("sample") === "true";
  const seed = Number(q.get("seed"));
  if (q.has("seed") && Number.isInteger(seed) && seed >= 0) s.seed = seed;
  const cmp = q.get("compare");
  if (cmp) s.compare = cmp;
  const dataset = q.get("dataset");
  if (dataset) s.dataset = dataset;
}

function writeMoreUrl(q: URLSearchParams, s: UrlState): void {
  if (s.dataset) q.set("dataset", s.dataset);
  if (!s.prompt) return;
  if (s.gen) {
    q.set("gen", String(s.gen));
    if (s.sample) q.set("sample", "1");
    if (s.sample) q.set("seed", String(s.seed ?? 0));
  }
  if (s.compare) q.set("compare", s.compare);
}
