// The JSON API client: every request is timed (debug mode shows the log) and every failure
// becomes an ApiError carrying the server's error.code / error.message.

export class ApiError extends Error {
  constructor(
    message: string,
    public code: string,
    public status: number,
    public request: string,
  ) {
    super(message);
  }
}

export interface RequestLog {
  method: string;
  path: string;
  status: number;
  ms: number;
  bytes: number;
  at: number;
}

const listeners: ((entry: RequestLog) => void)[] = [];
export const requestLog: RequestLog[] = [];

export function onRequest(fn: (entry: RequestLog) => void): void {
  listeners.push(fn);
}

function apiUrl(path: string): string {
  // Relative to the page, so the app also works behind a proxy that serves it under a prefix.
  return new URL(path.replace(/^\//, ""), document.baseURI).toString();
}

export async function request<T>(method: "GET" | "POST", path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const t0 = performance.now();
  const label = `${method} /${path.replace(/^\//, "").split("?")[0]}`;
  let res: Response;
  try {
    res = await fetch(apiUrl(path), {
      method,
      headers: body === undefined ? undefined : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if ((err as Error).name === "AbortError") throw err;
    log(method, path, 0, t0, 0);
    throw new ApiError(
      "Cannot reach the routelens server. Is `routelens serve` still running?",
      "network_error",
      0,
      label,
    );
  }
  const text = await res.text();
  log(method, path, res.status, t0, text.length);
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const err = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
    const message = err?.message ?? (text.trim().slice(0, 300) || res.statusText || "request failed");
    throw new ApiError(message, err?.code ?? `http_${res.status}`, res.status, label);
  }
  if (data === undefined) throw new ApiError("The server sent an answer that is not JSON.", "bad_response", res.status, label);
  return data as T;
}

function log(method: string, path: string, status: number, t0: number, bytes: number): void {
  const entry = { method, path: "/" + path.replace(/^\//, ""), status, ms: performance.now() - t0, bytes, at: Date.now() };
  requestLog.push(entry);
  if (requestLog.length > 200) requestLog.shift();
  for (const fn of listeners) fn(entry);
}

export function qs(params: Record<string, string | number | boolean | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.set(k, String(v));
  return u.toString();
}
