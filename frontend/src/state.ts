// The view's state in the URL query string, so a reload or a shared link restores the view:
//   ?model=NAME&prompt=TEXT&chat=1&norm=l2&target=5&threshold=0.04&sel=node:x:12:4&head=3&neuron=812
// sel is node:<node id> or edge:<kind>|<source id>|<target id>.
// A URL that asks for work and that this tab did not write itself is confirmed by the user before
// anything loads or runs (ui/linkconfirm.ts).

import type { Selection } from "./types";
import { rememberOwnUrl } from "./ui/linkconfirm";

export interface UrlState {
  model?: string;
  prompt?: string;
  chat?: boolean;
  norm?: "l1" | "l2";
  target?: number;
  threshold?: number;
  sel?: Selection | null;
  head?: number | null;
  neuron?: number | null;
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
  if (target !== null && target !== "" && Number.isInteger(Number(target))) s.target = Number(target);
  const th = Number(q.get("threshold"));
  if (q.has("threshold") && Number.isFinite(th) && th >= 0 && th <= 1) s.threshold = th;
  const sel = q.get("sel");
  if (sel?.startsWith("node:")) s.sel = { type: "node", id: sel.slice(5) };
  else if (sel?.startsWith("edge:")) s.sel = { type: "edge", key: sel.slice(5) };
  const head = q.get("head");
  if (head !== null && Number.isInteger(Number(head))) s.head = Number(head);
  const neuron = q.get("neuron");
  if (neuron !== null && Number.isInteger(Number(neuron))) s.neuron = Number(neuron);
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
    const search = q.toString();
    const url = location.pathname + (search ? "?" + search : "");
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
    rememberOwnUrl(); // a reload of this URL restores the view without asking (ui/linkconfirm.ts)
  };
  clearTimeout(timer);
  if (debounce) timer = window.setTimeout(apply, 150);
  else apply();
}
