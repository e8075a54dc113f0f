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

function start(path) {
  const p = fetch(path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
  p.catch(() => {});  // an unclaimed failure is not an error; a claimed one is the claimer's
  early.set(path, p);
  return p;
}

/** The path of the overview of `cluster`, exactly as the overview view asks for it. */
export function overviewPath(cluster) {
  return '/v1/overview?' + new URLSearchParams({ cluster }).toString();
}

const onOverview = location.pathname === '/ui/' || location.pathname === '/ui';
const startRest = () => {
  start('/v1/clusters');
  if (onOverview) start(overviewPath(localStorage.getItem('berth.cluster') || 'default'));
};
const session = start('/v1/session');
// This browser was signed in when it last looked (api.js keeps the mark): ask
// for everything at once. Otherwise ask for the rest only once the session
// answers, so a signed-out browser never draws a 401 from them.
const signedIn = localStorage.getItem('berth.signedIn') === '1';
if (signedIn) startRest();
else early.set('/v1/clusters', null);  // claimed as "pending" until the session is known
// Without a session the rest is not taken (the app shows its login screen);
// the session's own answer still is, so it is asked for once.
const dropRest = () => { for (const path of [...early.keys()]) if (path !== '/v1/session') early.delete(path); };
session.then((r) => {
  if (!r.ok) dropRest();
  else if (!signedIn) startRest();
}, dropRest);

/** The early answer to GET `path` (a Promise of a Response), or null: each is
 *  handed out once, and only in the first seconds of the page. */
export async function take(path) {
  if (performance.now() - bornAt > FRESH_MS) return null;
  if (path === '/v1/clusters' && early.get(path) === null) {
    // Asked before the session answered: wait for it, then for the list.
    try { await session; } catch { return null; }
  }
  const p = early.get(path);
  if (!p) return null;
  early.delete(path);
  return p;
}
