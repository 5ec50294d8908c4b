// The console's only way to talk to the server: JSON over fetch, relative URLs.
//
// URLs are relative ("api/pools", never "/api/pools") so the console keeps working when
// the service is mounted under a path prefix behind a proxy.

const TOKEN_KEY = "poolwatch.token";
const REQUEST_TIMEOUT_MS = 8000;

/** An HTTP or network failure, carrying the API's own `error.message` when it sent one. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the server could not be reached
    this.code = code;
  }

  /** True when the server refused because of the token (missing, wrong, or not allowed). */
  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return ""; // storage disabled: the console still works read-only
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled (private mode policies): the token lives for this page only.
  }
  memoryToken = token;
}

let memoryToken = "";

/**
 * Call the API and return the decoded JSON body.
 *
 * Throws ApiError for a non-2xx answer (message taken from `{"error": {"message"}}`),
 * for a network failure and for a timeout; an AbortError from `signal` passes through.
 */
export async function request(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken() || memoryToken;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";

  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const combined = signal ? anySignal(signal, timeout) : timeout;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: combined,
      cache: "no-store",
      credentials: "same-origin",
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    if (timeout.aborted) {
      const seconds = REQUEST_TIMEOUT_MS / 1000;
      throw new ApiError(0, "timeout", `The server did not answer ${method} ${path} within ${seconds} s.`);
    }
    throw new ApiError(0, "network", "Cannot reach the poolwatch server; check that it is running.");
  }

  const text = await response.text();
  let payload = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }
  if (!response.ok) {
    const err = payload && typeof payload === "object" ? payload.error : null;
    const fallback = `${method} ${path} failed with HTTP ${response.status} ${response.statusText}`;
    const message = err?.message || fallback.trim();
    throw new ApiError(response.status, err?.code || `http_${response.status}`, message);
  }
  return payload;
}

function anySignal(...signals) {
  if (typeof AbortSignal.any === "function") return AbortSignal.any(signals);
  const controller = new AbortController();
  for (const s of signals) {
    if (s.aborted) controller.abort(s.reason);
    else s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/** Build "path?k=v&..." leaving out empty values. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

export const api = {
  info: (signal) => request("api/info", { signal }),
  pools: (signal) => request("api/pools", { signal }),
  stats: (signal) => request("api/stats", { signal }),
  taskTypes: (signal) => request("api/task-types", { signal }),
  tasks: (params, signal) => request(withQuery("api/tasks", params), { signal }),
  task: (id, signal) => request(`api/tasks/${encodeURIComponent(id)}`, { signal }),
  taskStack: (id, signal) => request(`api/tasks/${encodeURIComponent(id)}/stack`, { signal }),
  samples: (signal) => request("api/samples", { signal }),
  latency: (window, signal) => request(withQuery("api/latency", { window }), { signal }),
  consoleSettings: (signal) => request("api/console", { signal }),
  patchPool: (name, changes) =>
    request(`api/pools/${encodeURIComponent(name)}`, { method: "PATCH", body: changes }),
  deletePool: (name, cancelPending) =>
    request(withQuery(`api/pools/${encodeURIComponent(name)}`, { cancel_pending: String(cancelPending) }), {
      method: "DELETE",
    }),
  cancelTask: (id) => request(`api/tasks/${encodeURIComponent(id)}/cancel`, { method: "POST" }),
};
