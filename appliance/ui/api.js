// The REST API from the browser: every call carries the admin token as a bearer; a failure throws
// an ApiError whose message is the API's own one-line `error` (a 400 names the field), prefixed
// with the method, path and status. A 401 also tells the app to ask for the token again.
import { showError } from './dom.js';

const TOKEN_KEY = 'rackcast.adminToken';

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let unauthorized = () => {};

export const getToken = () => token;

/** Keep the token for this tab (session storage: gone when the tab closes), or forget it. */
export function setToken(t, keep) {
  token = t;
  if (keep) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function onUnauthorized(f) {
  unauthorized = f;
}

export async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(20_000),
    });
  } catch (e) {
    throw new ApiError(0, `the appliance did not answer ${method} ${path}: ${e.message}`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    const msg = json?.error ?? (text.trim() || res.statusText);
    if (res.status === 401) unauthorized(json?.error ?? 'the admin token was refused');
    throw new ApiError(res.status, `${method} ${path}: ${res.status} ${msg}`, json?.code);
  }
  return json;
}

/** Run f, showing its failure in the banner (or in `where`, a form's error line); undefined then. */
export async function guarded(f, where) {
  try {
    if (where) where.textContent = '';
    return await f();
  } catch (e) {
    if (where) where.textContent = e.message;
    else showError(e.message);
    return undefined;
  }
}

/** The morning report's URL: a plain link cannot send a header, so /reports takes ?token=. */
export const reportHref = (id) => `/reports/${id}?token=${encodeURIComponent(token)}`;
