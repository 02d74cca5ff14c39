// Every call to the API: the credential from sessionStorage as a header, errors as ApiError
// with the server's message.

const TOKEN = "drama.console.token";

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN, value);
  else sessionStorage.removeItem(TOKEN);
}

export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** A failed request: `status`, the server's `code` and a readable `message`. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** The readable text of an error envelope (`detail` as text, object or field list). */
export function describe(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${e.field || (e.loc || []).join(".")}: ${e.msg}`).join("; ");
  }
  if (detail && typeof detail === "object") return detail.message || detail.error || JSON.stringify(detail);
  return `The server answered ${status}.`;
}

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/**
 * Calls the API. `options.body` is sent as JSON unless it is FormData; `options.version`
 * becomes `If-Match`. Resolves to `{status, body, headers}`; rejects with ApiError.
 */
export async function api(method, path, options = {}) {
  // Signed out: a call left over from the page just left is answered here. Sent, it would be
  // refused with a 401 and read as a refused credential.
  if (options.auth !== false && !token()) {
    throw new ApiError(401, "unauthenticated", "Sign in first.", null);
  }
  const headers = { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) };
  let body;
  if (options.body instanceof FormData) {
    body = options.body;
  } else if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  if (options.version !== undefined && options.version !== null) headers["If-Match"] = `"${options.version}"`;
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store", signal: options.signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server could not be reached. Check your connection and try again.");
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const code = (parsed && (parsed.code || (parsed.detail && parsed.detail.code))) || "error";
    const error = new ApiError(response.status, code, describe(parsed, response.status), parsed);
    if (response.status === 401 && options.auth !== false) onUnauthorized(error);
    throw error;
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export const get = (path, options) => api("GET", path, options).then((r) => r.body);
export const post = (path, body, options = {}) => api("POST", path, { ...options, body }).then((r) => r.body);
export const del = (path, options) => api("DELETE", path, options).then((r) => r.body);

/** A path segment, escaped. */
export const seg = (value) => encodeURIComponent(value);

