// The REST API (/v1, same origin), and the caller's credentials, held in this module's memory
// only: a reload or a closed tab signs out. Nothing is written to localStorage or sessionStorage.

const ROLES = ["viewer", "member", "admin", "owner"];
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection"]);

/** An answer that was not a success: the problem+json body, its status and request id. */
export class ApiError extends Error {
  constructor(status, problem, requestId) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.requestId = problem.request_id || requestId || "";
    this.fieldErrors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

const credentials = {
  kind: null, // "token" (email and password) or "key" (an API key)
  access: null,
  refresh: null,
  expiresAt: 0, // ms since the epoch; refreshed a little before
  email: "",
};
let refreshing = null;

export function signedIn() {
  return credentials.kind !== null;
}

export function who() {
  return credentials.kind === "key" ? "API key" : credentials.email;
}

export function usesApiKey() {
  return credentials.kind === "key";
}

export function signOut() {
  Object.assign(credentials, { kind: null, access: null, refresh: null, expiresAt: 0, email: "" });
}

function keep(tokens) {
  credentials.access = tokens.access_token;
  credentials.refresh = tokens.refresh_token;
  // 30 s early, so a request never leaves with a token about to expire.
  credentials.expiresAt = Date.now() + Math.max(0, tokens.expires_in - 30) * 1000;
}

export async function signInWithPassword(email, password) {
  const form = new URLSearchParams({ username: email, password });
  const tokens = await send("POST", "/v1/auth/token", { form, anonymous: true });
  keep(tokens);
  credentials.kind = "token";
  credentials.email = email;
}

export async function signInWithKey(key) {
  const before = { ...credentials };
  Object.assign(credentials, { kind: "key", access: key, refresh: null, expiresAt: Infinity });
  try {
    await send("GET", "/v1/projects?limit=1");
  } catch (error) {
    Object.assign(credentials, before);
    throw error;
  }
}

async function fresh() {
  if (credentials.kind !== "token" || Date.now() < credentials.expiresAt) return;
  refreshing ??= send("POST", "/v1/auth/refresh", {
    json: { refresh_token: credentials.refresh },
    anonymous: true,
  })
    .then(keep)
    .finally(() => {
      refreshing = null;
    });
  await refreshing;
}

/** One request; resolves to the parsed JSON body (null for 204) or rejects with an ApiError. */
export async function send(method, path, { json, form, anonymous = false, signal } = {}) {
  if (!anonymous) await fresh();
  const headers = { Accept: "application/json, application/problem+json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  if (!anonymous && credentials.access) headers.Authorization = `Bearer ${credentials.access}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal, credentials: "omit" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { title: "Network error", detail: String(error.message || error) }, "");
  }
  const requestId = response.headers.get("X-Request-ID") || "";
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const parsed = type.includes("json") ? await response.json() : { detail: await response.text() };
  if (!response.ok) throw new ApiError(response.status, parsed, requestId);
  return parsed;
}

export const get = (path, options) => send("GET", path, options);
export const post = (path, json, options) => send("POST", path, { ...options, json });
export const patch = (path, json) => send("PATCH", path, { json });
export const del = (path) => send("DELETE", path);

/** The query string of `params`, leaving out empty values. */
export function query(params) {
  const kept = Object.entries(params).filter(([, value]) => value !== "" && value != null);
  return kept.length ? `?${new URLSearchParams(kept)}` : "";
}

/** Whether `role` is at least `needed` (viewer < member < admin < owner). */
export function atLeast(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** PUT `file` to a presigned URL, reporting progress (0..1): fetch cannot, XMLHttpRequest can. */
export function putWithProgress(url, file, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", url);
    for (const [name, value] of Object.entries(headers || {})) {
      // The browser sends these itself (from the body) and refuses to be told them.
      if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) request.setRequestHeader(name, value);
    }
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) resolve();
      else reject(new ApiError(request.status, { title: "Upload refused", detail: request.responseText.slice(0, 300) }, ""));
    });
    request.addEventListener("error", () =>
      reject(new ApiError(0, { title: "Upload failed", detail: "The storage could not be reached." }, "")),
    );
    request.send(file);
  });
}
