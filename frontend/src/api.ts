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

// ---- access token -----------------------------------------------------------------------------
// A server started with an access token answers 401 "unauthorized" to every API call until the
// browser holds its HttpOnly cookie (set by POST /api/login). A call that meets that 401 waits for
// the login handler (the web app's token dialog: one for all the calls that fail together) and is
// then sent again, so callers only see the 401 when the user gives up. The token itself is never
// kept: it goes into the one login request, and the cookie does the remembering.

/** Resolves true once the browser is logged in, false when the user gives up. */
export type LoginHandler = (err: ApiError) => Promise<boolean>;

let loginHandler: LoginHandler | null = null;
let pendingLogin: Promise<boolean> | null = null;
let logins = 0; // successful logins so far: a 401 to a call sent before the last one is just retried

export function onUnauthorized(fn: LoginHandler): void {
  loginHandler = fn;
}

function needLogin(err: ApiError): Promise<boolean> {
  if (!pendingLogin) {
    pendingLogin = loginHandler!(err)
      .then(
        (ok) => {
          if (ok) logins++;
          return ok;
        },
        () => false,
      )
      .finally(() => {
        pendingLogin = null;
      });
  }
  return pendingLogin;
}

function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  const aborted = () => new DOMException("The request was aborted.", "AbortError");
  if (signal.aborted) return Promise.reject(aborted());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(aborted());
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export function isUnauthorized(err: unknown): err is ApiError {
  return err instanceof ApiError && err.status === 401 && err.code === "unauthorized";
}

/** POST /api/login: resolves when the server took the token (and set its cookie), else throws
 * the server's ApiError (401 for a wrong token). */
export async function login(token: string): Promise<void> {
  await send<{ ok: boolean }>("POST", "api/login", { token });
}

export async function request<T>(method: "GET" | "POST", path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  for (;;) {
    const seen = logins;
    try {
      return await send<T>(method, path, body, signal);
    } catch (err) {
      if (!loginHandler || !isUnauthorized(err)) throw err;
      // logged in while this call was on its way: send it again; else ask (once for all calls)
      if (seen === logins && !(await abortable(needLogin(err), signal))) throw err;
    }
  }
}

async function send<T>(method: "GET" | "POST", path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
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
