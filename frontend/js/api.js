/**
 * HTTP side of the protocol (docs/PROTOCOL.md). Every request carries the
 * access token when the page was opened with ?token=..., and every error is
 * turned into an Error whose message a person can read.
 */

/** The token from the page URL, or "" when none. */
export function pageToken(search = globalThis.location?.search ?? "") {
  return new URLSearchParams(search).get("token") ?? "";
}

/** Append the token (when set) and extra query values to a URL path. */
export function withToken(path, token, extra = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null) params.set(k, String(v));
  if (token) params.set("token", token);
  const q = params.toString();
  return q ? `${path}${path.includes("?") ? "&" : "?"}${q}` : path;
}

/** An error from the server, with its protocol code kept for callers. */
export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export function createApi(token = pageToken()) {
  async function request(method, path, body) {
    const init = { method, headers: {} };
    if (token) init.headers.Authorization = `Bearer ${token}`;
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(`cannot reach the server (${err.message})`, "network", 0);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const e = data?.error;
      const message = e?.message ?? (typeof data?.detail === "string" ? data.detail : `${response.status} ${response.statusText}`);
      throw new ApiError(message, e?.code ?? "http", response.status);
    }
    return data;
  }

  return {
    token,
    url: (path, extra) => withToken(path, token, extra),
    health: () => request("GET", "/api/health"),
    models: () => request("GET", "/api/models"),
    /** Methods with their defaults; with a model name, the defaults tuned for that model. */
    methods: (model) => request("GET", model ? `/api/methods?model=${encodeURIComponent(model)}` : "/api/methods"),
    /** Progress of the server's start-up computation of direction sets (docs/PROTOCOL.md). */
    directionsReady: () => request("GET", "/api/directions/ready"),
    createSession: (body) => request("POST", "/api/sessions", body),
    getSession: (id) => request("GET", `/api/sessions/${encodeURIComponent(id)}`),
    uploadFile: (file, model) => {
      const form = new FormData();
      form.append("file", file);
      if (model) form.append("model", model);
      return request("POST", "/api/sessions/upload", form);
    },
    uploadPhoto: (file, { model, pti = false, steps } = {}) => {
      const form = new FormData();
      form.append("file", file);
      form.append("pti", pti ? "true" : "false");
      if (steps) form.append("steps", String(steps));
      if (model) form.append("model", model);
      return request("POST", "/api/sessions/photo", form);
    },
    /** Export URLs are plain links (with the token in the query, as <a> cannot send headers). */
    exportUrl: (id, file, version) => withToken(`/api/sessions/${encodeURIComponent(id)}/${file}`, token, { v: version }),
  };
}
