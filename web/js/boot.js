// The first requests of a page load, started the moment this module arrives:
// index.html loads it on its own (async), so they overlap the fetch and parse of
// every other module instead of waiting for them. It asks for the session, the
// clusters and (on the overview) the overview of the cluster picked last time.
// The API client takes each answer once, while fresh (take()); anything later
// asks the server again.

const FRESH_MS = 5000;
const early = new Map();
const bornAt = performance.now();
performance.mark('berth-boot');

function request(path) {
  const p = fetch(path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
  p.catch(() => {});  // an unclaimed failure is not an error; a claimed one is the claimer's
  return p;
}

function start(path) {
  const p = request(path);
  early.set(path, p);
  return p;
}

/** The path of the overview of `cluster`, exactly as the overview view asks for it. */
export function overviewPath(cluster) {
  return '/v1/overview?' + new URLSearchParams({ cluster }).toString();
}

const onOverview = location.pathname === '/ui/' || location.pathname === '/ui';
const lastOverview = () => overviewPath(localStorage.getItem('berth.cluster') || 'default');
const session = start('/v1/session');
// This browser was signed in when it last looked (api.js keeps the mark): ask
// for everything at once. Otherwise ask for the rest only once the session
// answers, so a signed-out browser never draws a 401 from them; the clusters,
// which the app asks for before that, are then the chain of the two (null if
// there is no session, and the app shows its login screen).
const signedIn = localStorage.getItem('berth.signedIn') === '1';
if (signedIn) {
  start('/v1/clusters');
  if (onOverview) start(lastOverview());
} else {
  const afterSession = (then) => session.then((r) => (r.ok ? then() : null), () => null);
  early.set('/v1/clusters', afterSession(() => request('/v1/clusters')));
  if (onOverview) afterSession(() => start(lastOverview()));
}
// Without a session the rest is not taken; the session's own answer still is,
// so it is asked for once.
const dropRest = () => { for (const path of [...early.keys()]) if (path !== '/v1/session') early.delete(path); };
session.then((r) => { if (!r.ok) dropRest(); }, dropRest);

/** The early answer to GET `path` (a Promise of a Response, or of null when
 *  there is none after all), or null: each is handed out once, and only in the
 *  first seconds of the page. */
export function take(path) {
  if (performance.now() - bornAt > FRESH_MS) return null;
  const p = early.get(path);
  if (!p) return null;
  early.delete(path);
  return p;
}
