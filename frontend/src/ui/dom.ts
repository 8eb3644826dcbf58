// A tiny DOM builder and the shared formatting of tokens and numbers.

type Attrs = Record<string, string | number | boolean | null | undefined | ((ev: Event) => void)>;
export type Child = Node | string | number | null | undefined | false | Child[];

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v as EventListener);
      else if (k === "class") el.className = String(v);
      else if (k === "text") el.textContent = String(v);
      else if (k in el && typeof v !== "string" && k !== "style") (el as unknown as Record<string, unknown>)[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export const SVGNS = "http://www.w3.org/2000/svg";

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Record<string, string | number>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVGNS, tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

const WS: Record<string, string> = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\u00a0": "⍽" };

/** A byte group of a token label: bytes that are not (yet) a character, "<E6 97>"
 * (routelens/models/tokens.py). Its spaces are not the token's: they are shown as they are. */
const BYTE_GROUP = /<(?:[0-9A-F]{2} )*(?:[89A-F][0-9A-F]|3C)(?: [0-9A-F]{2})*>/; // a byte 80-FF (or 3C): "<17>" is text

/** A label cut into its text and its byte groups (odd indices: the groups). */
function labelParts(t: string): string[] {
  return t.split(/(<(?:[0-9A-F]{2} )*(?:[89A-F][0-9A-F]|3C)(?: [0-9A-F]{2})*>)/);
}

/** A token with its whitespace made visible (one mark per space, newline, tab); byte groups as they are. */
export function tokenText(t: string): string {
  if (t === "") return "∅";
  if (BYTE_GROUP.test(t)) return labelParts(t).map((part, i) => (i % 2 ? part : part && tokenText(part))).join("");
  let out = "";
  for (const ch of t) {
    const code = ch.codePointAt(0)!;
    if (WS[ch]) out += WS[ch];
    else if (code < 32 || code === 127) out += "\\x" + code.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out;
}

/** A token's bytes for a tooltip: hex "e697" (the API's `token_bytes` / `bytes`) as " · bytes E6 97";
 * "" when they are unknown. A token's label shows a piece of a character as its bytes, "<E6 97>"
 * (routelens/models/tokens.py); the bytes tell tokens with the same text apart. */
export function bytesNote(hex?: string | null): string {
  if (typeof hex !== "string") return "";
  const pairs = hex.toUpperCase().match(/../g) ?? [];
  return ` · bytes ${pairs.length ? pairs.join(" ") : "none"}`;
}

/** A token as a span: whitespace marks are dimmed, the text is monospace; its bytes on hover. */
export function tokenSpan(t: string, cls = "tok", hook = false, bytes?: string | null): HTMLSpanElement {
  const span = h("span", { class: cls, title: JSON.stringify(t) + bytesNote(bytes), "data-token": hook ? t : undefined });
  if (t === "") {
    span.append(h("span", { class: "ws" }, "∅"));
    return span;
  }
  let run = "";
  const flush = () => {
    if (run) span.append(run);
    run = "";
  };
  const parts = labelParts(t);
  if (parts.length > 1) {
    // byte groups dimmed like whitespace marks: bytes of a character that is not whole here
    parts.forEach((part, i) => (i % 2 ? span.append(h("span", { class: "ws bytes" }, part)) : part && span.append(...tokenSpan(part).childNodes)));
    return span;
  }
  for (const ch of t) {
    const code = ch.codePointAt(0)!;
    if (WS[ch] || code < 32 || code === 127) {
      flush();
      span.append(h("span", { class: "ws" }, WS[ch] ?? "\\x" + code.toString(16).padStart(2, "0")));
    } else run += ch;
  }
  flush();
  return span;
}

export function truncate(s: string, n: number): string {
  const chars = Array.from(s);
  return chars.length <= n ? s : chars.slice(0, n - 1).join("") + "…";
}

export function pct(p: number): string {
  if (p >= 0.995) return (p * 100).toFixed(0) + "%";
  if (p >= 0.1) return (p * 100).toFixed(1) + "%";
  if (p >= 0.001) return (p * 100).toFixed(2) + "%";
  if (p <= 0) return "0%";
  return "<0.1%";
}

export function num(x: number, digits = 3): string {
  if (!isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 10 ** -digits || a >= 1e5)) return x.toExponential(2);
  return x.toFixed(digits);
}

export function bigNumber(n: number | undefined): string {
  if (n === undefined || n === null) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
  return n.toLocaleString("en-US");
}

export function clamp(x: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, x));
}

export function download(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, style: "display:none" });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function slug(s: string, n = 32): string {
  return (
    s
      .normalize("NFKD")
      .replace(/[^\w]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, n)
      .replace(/-+$/, "")
      .toLowerCase() || "prompt"
  );
}

/** Replace an element's children (null / false children are skipped). */
export function fill(el: Node & ParentNode, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

const ICONS: Record<string, string> = {
  fullscreen: "M2 6V2h4M10 2h4v4M14 10v4h-4M6 14H2v-4",
  fit: "M5 2H2v3M11 2h3v3M14 11v3h-3M2 11v3h3M5 8h6M8 5v6",
};

/** A small stroked icon (16 x 16). */
export function icon(name: keyof typeof ICONS | string): SVGSVGElement {
  const el = svg("svg", { viewBox: "0 0 16 16", width: 14, height: 14, fill: "none", stroke: "currentColor", "stroke-width": 1.6, "stroke-linecap": "round", "aria-hidden": "true" });
  el.append(svg("path", { d: ICONS[name] ?? "" }));
  return el;
}
