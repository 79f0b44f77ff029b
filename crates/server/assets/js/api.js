// The analytics API client: the API key lives in localStorage and goes in the Authorization
// header; a 401 opens the sign-in form.

const KEY = "loupe.key";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body && body.error;
  }
}

export function apiKey() { return localStorage.getItem(KEY) || ""; }
export function setApiKey(k) { if (k) localStorage.setItem(KEY, k); else localStorage.removeItem(KEY); }

let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(f) { onUnauthenticated = f; }

async function call(method, path, body) {
  const headers = { accept: "application/json" };
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch { data = null; }
  if (resp.status === 401) onUnauthenticated();
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

/** GET /v1/analytics/<path> with the filter's query string plus `extra` parameters. */
export function analytics(path, filter, extra = {}) {
  const q = filter.toParams();
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== "") q.append(k, v);
  return call("GET", `/v1/analytics/${path}?${q}`);
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const del = (path) => call("DELETE", path);
