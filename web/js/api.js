// The API client: JSON requests with the session cookie and the CSRF header,
// typed errors, the session itself and the live change stream.
import { take } from './boot.js';

export class ApiError extends Error {
  constructor(status, code, message, leader) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.leader = leader || null;
  }
}

let session = null;
let onUnauthorized = () => {};

export function currentSession() { return session; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** The role may change things (admin, deploy); read-only may not. */
export function canWrite() {
  return !!session && (session.role === 'admin' || session.role === 'deploy');
}

function csrf() {
  return (session && session.csrf) || sessionStorage.getItem('berth.csrf') || '';
}

/** Sends one request. `body` is JSON-encoded unless it is a string. Resolves the
 *  parsed JSON answer (or the Response itself with `raw`); rejects with an
 *  ApiError carrying the server's code and message. A 401 (outside the session
 *  routes) also sends the app back to its login screen. */
export async function api(method, path, body, { signal, raw, quiet401 } = {}) {
  const headers = { Accept: 'application/json' };
  const change = method !== 'GET' && method !== 'HEAD';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (change) headers['X-CSRF-Token'] = csrf();
  let res;
  try {
    const early = method === 'GET' && !signal && !raw ? await take(path) : null;
    res = early ? await early : await fetch(path, {
      method, headers, signal, credentials: 'same-origin', cache: 'no-store',
      redirect: change ? 'manual' : 'follow',
      body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'NetworkError', 'The server cannot be reached: ' + e.message);
  }
  if (res.type === 'opaqueredirect') throw new ApiError(307, 'NotLeader', 'Changes are made on the leader');
  if (res.ok && raw) return res;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(res.status, e.code || 'HTTP' + res.status,
      e.message || text.slice(0, 200) || res.statusText, e.leader || (data && data.leader));
    if (res.status === 421 && err.code !== 'NotLeader') err.code = 'NotLeader';
    if (res.status === 401 && !path.startsWith('/v1/session') && !quiet401) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);

/** Builds "path?k=v&…", leaving out empty values. */
export function q(path, params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') u.set(k, v);
  }
  const s = u.toString();
  return s ? `${path}?${s}` : path;
}

export const enc = encodeURIComponent;

// ---- session ------------------------------------------------------------

function keep(s) {
  session = s;
  if (s && s.csrf) sessionStorage.setItem('berth.csrf', s.csrf);
  else sessionStorage.removeItem('berth.csrf');
  // Tells the next page load (boot.js) it may ask for data before the session answers.
  if (s) localStorage.setItem('berth.signedIn', '1');
  else localStorage.removeItem('berth.signedIn');
  return s;
}

/** The current session, or null when there is none (401). */
export async function loadSession() {
  try {
    const d = await api('GET', '/v1/session');
    return keep(d.session);
  } catch (e) {
    if (e.status === 401) { keep(null); return null; }
    throw e;
  }
}

export async function login(token) {
  const d = await api('POST', '/v1/session', { token });
  return keep(d.session);
}

export async function logout() {
  try { await api('DELETE', '/v1/session'); } finally { keep(null); }
}

// ---- live changes -------------------------------------------------------

/** Follows /v1/stream for `cluster`, calling onChange(Set of kinds) for each
 *  coalesced change. While the stream is down, calls onChange(null) every 20 s
 *  (a slow fallback; null means "anything may have changed"). onState(bool)
 *  reports whether the stream is up. Returns a stop function. */
export function watch(cluster, onChange, onState) {
  if (typeof SharedWorker === 'function') {
    try { return watchShared(cluster, onChange, onState); } catch { /* a direct stream then */ }
  }
  let es = null;
  let fallback = null;
  let retry = null;
  let stopped = false;
  const open = () => {
    if (stopped) return;
    es = new EventSource(q('/v1/stream', { cluster }));
    es.addEventListener('open', () => {
      onState(true);
      if (fallback) { clearInterval(fallback); fallback = null; onChange(null); }
    });
    es.addEventListener('change', (ev) => {
      let kinds = null;
      try { kinds = new Set(JSON.parse(ev.data).changed || []); } catch { kinds = null; }
      onChange(kinds);
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): poll slowly, try again later.
        onState(false);
        if (!fallback) fallback = setInterval(() => onChange(null), 20000);
        if (!retry) retry = setTimeout(() => { retry = null; open(); }, 15000);
      } else {
        onState(false);
      }
    });
  };
  open();
  return () => {
    stopped = true;
    if (es) es.close();
    if (fallback) clearInterval(fallback);
    if (retry) clearTimeout(retry);
  };
}

// Every tab of this browser shares one stream per cluster through a
// SharedWorker (js/stream-worker.js): a browser holds at most six connections to
// the server, and a stream per tab would use them up.
function watchShared(cluster, onChange, onState) {
  const worker = new SharedWorker(new URL('./stream-worker.js', import.meta.url), { name: 'berth-stream' });
  const port = worker.port;
  let fallback = null;
  port.addEventListener('message', (m) => {
    const msg = m.data || {};
    if (msg.type === 'state') {
      onState(msg.up);
      if (msg.up && fallback) { clearInterval(fallback); fallback = null; onChange(null); }
      if (!msg.up && msg.closed && !fallback) fallback = setInterval(() => onChange(null), 20000);
    } else if (msg.type === 'change') {
      let kinds = null;
      try { kinds = new Set(JSON.parse(msg.data).changed || []); } catch { kinds = null; }
      onChange(kinds);
    }
  });
  port.start();
  port.postMessage({ type: 'watch', cluster });
  const stop = () => port.postMessage({ type: 'stop' });
  addEventListener('pagehide', stop, { once: true });
  return () => {
    removeEventListener('pagehide', stop);
    stop();
    port.close();
    if (fallback) clearInterval(fallback);
  };
}
