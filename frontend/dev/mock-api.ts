// A development stand-in for `routelens serve`: answers the JSON API of docs/api.md with
// deterministic synthetic data (src/synth.ts), so the front end can be built and tried without
// Python or a model. Enabled by ROUTELENS_MOCK=1 (`npm run dev:mock`, `npm run preview:mock`).
// MOCK_DEMO=1 turns on demo mode, MOCK_DEBUG=1 debug mode, MOCK_SLOW=ms delays every answer.

import type { Plugin, Connect } from "vite";
import type { IncomingMessage, ServerResponse } from "node:http";
import { attnRow, rng, synthGraph, synthWord } from "../src/synth.ts";

const N_LAYERS = 30;
const N_HEADS = 9;

interface MockTrace {
  id: string;
  model: string;
  tokens: string[];
  chat: boolean;
  parallel: boolean;
}

// a model whose name says pythia / neox / gpt-j / phi gets parallel blocks (no node after attention)
const isParallel = (model: string) => /pythia|neox|gpt-j|phi/i.test(model);

const traces = new Map<string, MockTrace>();
const loads = new Map<string, number>(); // model -> load start time

function tokenize(prompt: string, chat: boolean): string[] {
  const words = prompt.match(/\s*[^\s]+|\s+/g) ?? [];
  const toks: string[] = [];
  for (const w of words) {
    // split long words the way BPE would, roughly
    if (w.trim().length > 7) {
      toks.push(w.slice(0, Math.ceil(w.length / 2)), w.slice(Math.ceil(w.length / 2)));
    } else toks.push(w);
  }
  return chat ? ["<|im_start|>", "user", "\n", ...toks, "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"] : toks;
}

function facts(model: string) {
  return {
    name: model,
    family: "llama",
    model_type: "llama",
    n_layers: N_LAYERS,
    n_heads: N_HEADS,
    n_kv_heads: 3,
    d_model: 576,
    head_dim: 64,
    vocab: 49152,
    parameters: 134515008,
    context_length: 8192,
    device: "cpu",
    dtype: "float32",
    parallel_blocks: isParallel(model),
  };
}

function effects(key: string, k: number) {
  const r = rng(key);
  const promoted = Array.from({ length: k }, (_, i) => ({ token: synthWord(r), id: Math.floor(r() * 49152), effect: +(12 - i * 0.9 + r()).toFixed(3) }));
  const suppressed = Array.from({ length: k }, (_, i) => ({ token: synthWord(r), id: Math.floor(r() * 49152), effect: -(8 - i * 0.6 + r()).toFixed(3) }));
  return { promoted, suppressed };
}

function predictions(t: MockTrace) {
  return t.tokens.map((_, i) => {
    const r = rng(`${t.id}:pred:${i}`);
    let left = 1;
    return Array.from({ length: 5 }, () => {
      const p = left * (0.3 + 0.6 * r());
      left -= p;
      return { token: synthWord(r), id: Math.floor(r() * 49152), prob: p };
    });
  });
}

class HttpError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

function int(v: string | null, name: string, dflt?: number): number {
  if (v === null || v === "") {
    if (dflt !== undefined) return dflt;
    throw new HttpError(422, "invalid_argument", `${name}: field required`);
  }
  const n = Number(v);
  if (!Number.isInteger(n)) throw new HttpError(422, "invalid_argument", `${name}: not an integer`);
  return n;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let s = "";
    req.on("data", (c) => (s += c));
    req.on("end", () => resolve(s));
  });
}

const config = () => ({
  demo_mode: !!process.env.MOCK_DEMO,
  debug: !!process.env.MOCK_DEBUG,
  default_model: "smollm2-135m-instruct",
  models: ["smollm2-135m-instruct", "gemma-3-270m"],
  allow_custom_models: !process.env.MOCK_DEMO,
  allow_loading_dataset_files: !process.env.MOCK_DEMO,
  max_user_string_length: process.env.MOCK_DEMO ? 300 : 2000,
  prompts: [
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
    "The Eiffel Tower is located in the city of",
    "1, 2, 3, 4, 5,",
  ],
  default_threshold: 0.04,
});

function status(model: string) {
  const start = loads.get(model);
  if (start === undefined) return { model, state: "absent", stage: "", elapsed: 0, message: "", facts: null };
  const el = (Date.now() - start) / 1000;
  if (model.includes("broken")) return { model, state: "error", stage: "loading", elapsed: el, message: `could not load '${model}': unsupported architecture 'BrokenForCausalLM'`, facts: null };
  if (el < 2.5) return { model, state: "loading", stage: el < 0.8 ? "downloading" : el < 1.6 ? "converting" : "loading", elapsed: el, message: "", facts: null };
  return { model, state: "ready", stage: "ready", elapsed: 2.5, message: "", facts: facts(model) };
}

async function handle(req: IncomingMessage, url: URL): Promise<unknown> {
  const path = url.pathname.replace(/^\/api/, "");
  const q = url.searchParams;
  const cfg = config();
  if (path === "/config") return cfg;
  if (path === "/health") return { ok: true };
  if (path === "/debug") return { resident_mb: 812.4, traces_cached: traces.size, max_traces: 16, models: Object.fromEntries([...loads.keys()].map((m) => [m, status(m).state])) };
  if (path === "/models/load" && req.method === "POST") {
    let body: { model?: string };
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      throw new HttpError(400, "bad_request", "the request body is not valid JSON; send a JSON object");
    }
    const m = (body.model ?? "").trim();
    if (!cfg.models.includes(m) && !cfg.allow_custom_models) throw new HttpError(403, "forbidden", `'${m}' is not one of this server's models; this server does not load other models`);
    if (!loads.has(m) || status(m).state === "error") loads.set(m, Date.now());
    return status(m);
  }
  if (path === "/models/status") return status(q.get("model") ?? "");
  if (path === "/trace" && req.method === "POST") {
    let body: { model?: string; prompt?: string; chat?: boolean };
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      throw new HttpError(400, "bad_request", "the request body is not valid JSON; send a JSON object");
    }
    const model = body.model ?? cfg.default_model;
    const prompt = body.prompt ?? "";
    if (!prompt.trim()) throw new HttpError(422, "empty_prompt", "the prompt is empty: type some text to trace");
    if (prompt.length > cfg.max_user_string_length) throw new HttpError(413, "prompt_too_long", `the prompt has ${prompt.length} characters; this server accepts at most ${cfg.max_user_string_length}`);
    if (!cfg.models.includes(model) && !cfg.allow_custom_models) throw new HttpError(403, "forbidden", `'${model}' is not one of this server's models`);
    if (model.includes("broken")) throw new HttpError(422, "unsupported_architecture", `could not load '${model}': unsupported architecture 'BrokenForCausalLM'`);
    if (!loads.has(model)) loads.set(model, Date.now() - 10_000);
    const id = (rng(`${model}|${prompt}|${!!body.chat}`)() * 1e16).toString(36).slice(0, 12);
    const t: MockTrace = { id, model, tokens: tokenize(prompt, !!body.chat), chat: !!body.chat, parallel: isParallel(model) };
    traces.set(id, t);
    return { trace_id: id, model, facts: facts(model), tokens: t.tokens, token_ids: t.tokens.map((_, i) => 1000 + i), n_layers: N_LAYERS, n_heads: N_HEADS, parallel: t.parallel, predictions: predictions(t), timings: { forward: 0.21, total: 0.34, cached: false } };
  }
  const m = path.match(/^\/trace\/([^/]+)\/(graph|node|edge|head|ffn|neuron)$/);
  if (m) {
    const t = traces.get(m[1]);
    if (!t) throw new HttpError(404, "unknown_trace", `no trace '${m[1]}' on this server (it may have been evicted); run the prompt again`);
    const T = t.tokens.length;
    const pos = (name: string, dflt?: number) => {
      const p = int(q.get(name), name, dflt);
      const r = p < 0 ? p + T : p;
      if (r < 0 || r >= T) throw new HttpError(422, "invalid_argument", `position ${p} is out of range for ${T} tokens`);
      return r;
    };
    const layer = () => {
      const l = int(q.get("layer"), "layer");
      if (l < -1 || l >= N_LAYERS) throw new HttpError(422, "invalid_argument", `layer ${l} is out of range: the model has layers 0..${N_LAYERS - 1}`);
      return l;
    };
    switch (m[2]) {
      case "graph": {
        const th = Number(q.get("threshold") ?? "0.04");
        if (!(th >= 0 && th <= 1)) throw new HttpError(422, "invalid_argument", "threshold must be a number between 0 and 1");
        const g = synthGraph({ tokens: t.tokens, nLayers: N_LAYERS, nHeads: N_HEADS, target: pos("target", -1), threshold: th, seed: t.id, name: t.model, parallel: t.parallel });
        g.target.token = predictions(t)[g.target.pos!][0].token;
        return g;
      }
      case "node": {
        const kind = q.get("kind");
        const p = pos("pos");
        const l = kind === "embed" ? -1 : layer();
        const r = rng(`${t.id}:node:${kind}:${l}:${p}:${q.get("norm")}`);
        const k = int(q.get("k"), "k", 10);
        let left = 1;
        const top = Array.from({ length: k }, (_, i) => {
          const pr = left * (0.2 + 0.5 * r());
          left -= pr;
          return { token: synthWord(r), id: Math.floor(r() * 49152), prob: pr, rank: i, rank_change: kind === "embed" ? null : Math.floor((r() - 0.4) * 30) };
        });
        return { top_tokens: top, ...(kind === "embed" ? { promoted: [], suppressed: [] } : effects(`${t.id}:w:${kind}:${l}:${p}`, k)) };
      }
      case "edge": {
        const l = layer();
        const s = pos("source");
        const d = pos("target");
        if (s > d) throw new HttpError(422, "invalid_argument", `source ${s} comes after target ${d}: attention only reads earlier positions`);
        const row = attnRow(t.id, l, d, N_HEADS);
        const hw = row.sources.get(s) ?? new Array(N_HEADS).fill(0);
        return { weight: hw.reduce((a, b) => a + b, 0), heads: hw.map((w, h) => ({ head: h, weight: w })).sort((a, b) => b.weight - a.weight) };
      }
      case "head": {
        const l = layer();
        const hd = int(q.get("head"), "head");
        const p = pos("pos", -1);
        if (hd < -1 || hd >= N_HEADS) throw new HttpError(422, "invalid_argument", `head ${hd} is out of range: use 0..${N_HEADS - 1}, or -1 for all heads`);
        const pattern: number[][] = [];
        const contributions: number[][] = [];
        for (let i = 0; i < T; i++) {
          const r = rng(`${t.id}:pat:${l}:${hd}:${i}`);
          const row = Array.from({ length: T }, (_, j) => (j <= i ? (j === 0 ? 3 : j === i ? 1.5 : 0.2) * r() ** 2 : 0));
          const s = row.reduce((a, b) => a + b, 0) || 1;
          pattern.push(row.map((x) => +(x / s).toFixed(5)));
          const ar = attnRow(t.id, l, i, N_HEADS);
          contributions.push(Array.from({ length: T }, (_, j) => {
            const hw = ar.sources.get(j);
            if (!hw) return 0;
            return +(hd === -1 ? hw.reduce((a, b) => a + b, 0) : hw[hd]).toFixed(5);
          }));
        }
        return { pattern, contributions, ...effects(`${t.id}:head:${l}:${hd}:${p}`, 10) };
      }
      case "ffn": {
        const l = layer();
        const p = pos("pos");
        const k = int(q.get("k"), "k", 20);
        const r = rng(`${t.id}:ffn:${l}:${p}`);
        const neurons = Array.from({ length: k }, (_, i) => {
          const idx = Math.floor(r() * 1536);
          return { neuron: String(idx), index: idx, importance: 0.06 / (i + 1) + 0.002 * r(), activation: (r() - 0.45) * 8, ...effects(`${t.id}:neuron:${l}:${p}:${idx}`, 3) };
        });
        return { neurons, all: effects(`${t.id}:ffnall:${l}:${p}`, 10) };
      }
      case "neuron": {
        const l = layer();
        const p = pos("pos");
        const n = int(q.get("neuron"), "neuron");
        return effects(`${t.id}:neuron:${l}:${p}:${n}`, int(q.get("k"), "k", 10));
      }
    }
  }
  throw new HttpError(404, "not_found", `Not Found: ${req.method} ${url.pathname} (the API is listed at /api/docs)`);
}

function middleware(): Connect.NextHandleFunction {
  return (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (!url.pathname.startsWith("/api/")) return next();
    const delay = Number(process.env.MOCK_SLOW ?? 0);
    setTimeout(async () => {
      let status = 200;
      let body: unknown;
      try {
        body = await handle(req, url);
        if (url.pathname === "/api/models/load" && (body as { state: string }).state !== "ready") status = 202;
      } catch (err) {
        const e = err instanceof HttpError ? err : new HttpError(500, "internal_error", String(err));
        status = e.status;
        body = { error: { code: e.code, message: e.message } };
      }
      res.statusCode = status;
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify(body));
    }, delay);
  };
}

export function mockApi(): Plugin {
  return {
    name: "routelens-mock-api",
    configureServer(server) {
      server.middlewares.use(middleware());
    },
    configurePreviewServer(server) {
      server.middlewares.use(middleware());
    },
  };
}
