// The console's one way to the vault: the public HTTP API, same origin, the token only in the
// Authorization header (never in a URL, a cookie or a log).

const TOKEN_KEY = 'hoso.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  grant = null;
}

/** The grant a signed-in officer reads through, sent as `Hoso-Grant` (a grant link's token
 * names its grant itself). */
let grant = null;
export function setGrant(id) {
  grant = id;
}

/** An answer the API refused, with its stable code. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Tells the app the session ended (expired, revoked) so it can sign out. */
function sessionEnded(error) {
  if (error.status === 401) window.dispatchEvent(new CustomEvent('hoso:session-ended', { detail: error }));
  return error;
}

async function refusal(response) {
  let code = 'internal_error';
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
  } catch {
    // Not JSON (a proxy's page): keep the status.
  }
  return sessionEnded(new ApiError(response.status, code, message));
}

/**
 * Calls the API. `json` is sent as a JSON body. Returns the parsed JSON (null for 204), or with
 * `raw: true` the Response itself. Throws ApiError.
 */
export async function api(method, path, { json, raw = false } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (grant) headers['Hoso-Grant'] = grant;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    throw new ApiError(0, 'network', String(e));
  }
  if (!response.ok) throw await refusal(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** Sends a file's bytes as the body (`POST`), answering the parsed JSON. Throws ApiError. */
export async function postFile(path, file) {
  const headers = { Accept: 'application/json', 'Content-Type': 'application/octet-stream', Authorization: `Bearer ${token()}` };
  let response;
  try {
    response = await fetch(path, { method: 'POST', headers, body: file, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch (e) {
    throw new ApiError(0, 'network', String(e));
  }
  if (!response.ok) throw await refusal(response);
  return response.json();
}

/**
 * Sends a multipart form with upload progress (fetch cannot report it): `onProgress(fraction)`.
 * Resolves to { status, body }.
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Authorization', `Bearer ${token()}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (ev) => {
      if (ev.lengthComputable) onProgress(ev.loaded / ev.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve({ status: xhr.status, body });
      } else {
        reject(sessionEnded(new ApiError(xhr.status, body?.error?.code ?? 'internal_error',
          body?.error?.message ?? `HTTP ${xhr.status}`)));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'network error')));
    xhr.addEventListener('timeout', () => reject(new ApiError(0, 'network', 'timeout')));
    xhr.send(form);
  });
}

/** Every page of a cursor-paged listing, `onPage(count)` after each. */
export async function allPages(path, params, onPage) {
  const entries = [];
  let cursor = null;
  do {
    const query = new URLSearchParams(params);
    query.set('limit', '1000');
    if (cursor) query.set('cursor', cursor);
    const page = await api('GET', `${path}?${query}`);
    entries.push(...page.entries);
    cursor = page.next;
    onPage?.(entries.length);
  } while (cursor);
  return entries;
}
