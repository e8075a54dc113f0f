// The dashboard's entry point: the session, the shell (sidebar, header with the
// cluster picker, role and logout), the router and the live change stream.
import { h, clear, icon, toast, pill } from './js/dom.js';
import { get, loadSession, logout, canWrite, currentSession, setUnauthorizedHandler, watch } from './js/api.js';
import { overviewView } from './js/views/overview.js';

// Views other than the overview and the login screen load when first shown (and
// in idle time after the first render), so a cold load fetches only what its
// first screen needs: HTTP/1.1 gives a page six connections to share.
const LAZY = {
  nodes: () => import('./js/views/nodes.js'),
  services: () => import('./js/views/services.js'),
  tasks: () => import('./js/views/tasks.js'),
  taskdefs: () => import('./js/views/taskdefs.js'),
  registry: () => import('./js/views/registry.js'),
};

const BASE = '/ui';
const NAV = [
  { path: '', label: 'Overview', icon: 'overview' },
  { path: 'nodes', label: 'Nodes', icon: 'nodes' },
  { path: 'services', label: 'Services', icon: 'services' },
  { path: 'tasks', label: 'Tasks', icon: 'tasks' },
  { path: 'taskdefs', label: 'Task definitions', icon: 'taskdefs' },
  { path: 'registry', label: 'Registry', icon: 'registry' },
];

/** Picks the view for a path under /ui/: [factory, id], or [null] for none. */
async function route(parts) {
  const [section, ...rest] = parts;
  const id = rest.length ? rest.map(decodeURIComponent).join('/') : null;
  const lazy = async (name, list, one) => {
    const m = await LAZY[name]();
    return id ? [m[one], id] : [m[list]];
  };
  switch (section || '') {
    case '': return [overviewView];
    case 'nodes': return lazy('nodes', 'nodesView', 'nodeView');
    case 'services': return lazy('services', 'servicesView', 'serviceView');
    case 'tasks': return lazy('tasks', 'tasksView', 'taskView');
    case 'taskdefs': return lazy('taskdefs', 'taskdefsView', 'familyView');
    case 'registry': return lazy('registry', 'registryView', 'repositoryView');
    default: return [null];
  }
}

const root = document.getElementById('app');
const state = {
  cluster: localStorage.getItem('berth.cluster') || 'default',
  clusters: [],
  view: null,
  stopStream: null,
  streamUp: null,
};

export function navigate(path, { replace = false } = {}) {
  const url = path.startsWith('/') ? path : `${BASE}/${path}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

// Links inside the app move without reloading the page.
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE + '/') || a.hasAttribute('download')) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', () => render());
// Escape closes the navigation drawer (dialogs close on Escape by themselves).
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && root.classList.contains('nav-open')) {
    root.classList.remove('nav-open');
    const b = root.querySelector('.menu-btn');
    if (b) { b.setAttribute('aria-expanded', 'false'); b.focus(); }
  }
});

setUnauthorizedHandler((err) => showLogin(err.message || 'Your session ended: sign in again.'));

let shell = null;
let renderSeq = 0;  // bumped by every render and login screen: the last one wins

// The login screen loads only when needed: a signed-in browser never fetches it.
async function showLogin(message) {
  stopStream();
  if (state.view && state.view.unmount) state.view.unmount();
  state.view = null;
  shell = null;
  const seq = ++renderSeq;
  let loginView = null;
  try {
    ({ loginView } = await import('./js/views/login.js'));
  } catch (e) {
    message = (message ? message + ' ' : '') + 'The login screen could not be loaded: ' + e.message;
  }
  if (seq !== renderSeq) return;
  clear(root);
  root.className = 'login-page';
  root.removeAttribute('aria-busy');
  root.append(loginView
    ? loginView({ message, onLogin: async () => { await start(); } })
    : h('p.boot-msg', { role: 'alert' }, message, ' ', h('a', { href: location.pathname }, 'Reload')));
}

function stopStream() {
  if (state.stopStream) state.stopStream();
  state.stopStream = null;
}

/** Follows the cluster's changes. With `catchUp`, the view shown already loaded
 *  before the stream was there: it reloads once when the stream is up, for what
 *  changed in between (a new stream says nothing of the past). */
function startStream({ catchUp = false } = {}) {
  stopStream();
  let behind = catchUp;
  state.stopStream = watch(state.cluster, (kinds) => {
    const v = state.view;
    if (!v || !v.refresh) return;
    if (kinds === null || !v.kinds || v.kinds.some((k) => kinds.has(k))) v.refresh(kinds);
  }, (up) => {
    if (up && behind) {
      behind = false;
      if (state.view && state.view.refresh) state.view.refresh(null);
    }
    state.streamUp = up;
    if (shell) {
      shell.live.className = 'live ' + (up ? 'live-on' : 'live-off');
      shell.live.title = up ? 'Live: changes show as they happen' : 'Reconnecting to the change stream…';
      shell.liveText.textContent = up ? 'Live' : 'Offline';
    }
  });
}

function buildShell() {
  const s = currentSession();
  const navList = h('ul.nav-list', NAV.map((n) =>
    h('li', h('a.nav-link', { href: `${BASE}/${n.path}`, dataset: { nav: n.path || 'overview' } }, icon(n.icon), h('span', n.label)))));
  const menuBtn = h('button.btn-icon.menu-btn', { type: 'button', 'aria-label': 'Menu', 'aria-expanded': 'false', 'aria-controls': 'sidebar' }, icon('menu'));
  const sidebar = h('nav#sidebar.sidebar', { 'aria-label': 'Main' },
    h('a.brand', { href: `${BASE}/` }, h('img', { src: new URL('./favicon.svg', import.meta.url).pathname, alt: '', width: '28', height: '28' }), h('span', 'Berth')),
    navList);
  menuBtn.addEventListener('click', () => {
    const open = !root.classList.contains('nav-open');
    root.classList.toggle('nav-open', open);
    menuBtn.setAttribute('aria-expanded', String(open));
  });
  const picker = h('select#cluster-picker', { 'aria-label': 'Cluster', dataset: { test: 'cluster-picker' } });
  picker.addEventListener('change', () => {
    state.cluster = picker.value;
    localStorage.setItem('berth.cluster', state.cluster);
    startStream();
    render();
  });
  const live = h('span.live', { role: 'status' });
  const liveText = h('span', '…');
  live.append(h('span.live-dot'), liveText);
  const logoutBtn = h('button.btn.btn-small.btn-ghost', { type: 'button', dataset: { action: 'logout' } }, icon('logout'), h('span', 'Log out'));
  logoutBtn.addEventListener('click', async () => {
    try { await logout(); } catch { /* the cookie goes either way */ }
    showLogin('You are logged out.');
  });
  const header = h('header.topbar',
    menuBtn,
    h('div.cluster-pick', h('label', { for: 'cluster-picker' }, 'Cluster'), picker),
    h('div.topbar-right', live,
      h('span.role', { title: `token ${s.tokenId || ''}`, dataset: { role: s.role } }, pill(s.role, s.role === 'read-only' ? 'off' : 'info')),
      logoutBtn));
  const main = h('main#main.main', { tabindex: '-1' });
  clear(root);
  root.className = 'shell' + (canWrite() ? '' : ' read-only');
  root.removeAttribute('aria-busy');
  root.append(h('a.skip', { href: '#main' }, 'Skip to content'), sidebar, h('div.content', header, main));
  shell = { main, picker, navList, live, liveText };
}

function fillPicker() {
  const p = shell.picker;
  clear(p);
  const names = state.clusters.map((c) => c.clusterName);
  if (!names.includes(state.cluster) && names.length) {
    state.cluster = names.includes('default') ? 'default' : names[0];
  }
  for (const n of names.length ? names : [state.cluster]) p.append(h('option', { value: n, selected: n === state.cluster }, n));
}

async function render() {
  if (!shell) return;
  const seq = ++renderSeq;
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : '/';
  const parts = path.split('/').filter(Boolean);
  for (const a of shell.navList.querySelectorAll('a')) {
    const navPath = a.dataset.nav === 'overview' ? '' : a.dataset.nav;
    if ((parts[0] || '') === navPath) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  root.classList.remove('nav-open');
  let factory, id, failure = null;
  try {
    [factory, id] = await route(parts);
  } catch (e) {
    failure = e;
  }
  if (seq !== renderSeq || !shell) return;  // another navigation came first
  if (state.view && state.view.unmount) state.view.unmount();
  clear(shell.main);
  if (failure) {
    state.view = null;
    shell.main.append(h('section.view', { dataset: { view: 'error', loaded: 'true' } },
      h('h1', 'This page could not be loaded'), h('p', String(failure.message || failure)),
      h('p', h('a', { href: location.pathname + location.search }, 'Try again'))));
    return;
  }
  if (!factory) {
    state.view = null;
    shell.main.append(h('section.view', { dataset: { view: 'notfound', loaded: 'true' } },
      h('h1', 'Page not found'), h('p', h('a', { href: `${BASE}/` }, 'Back to the overview'))));
    return;
  }
  const ctx = {
    cluster: state.cluster,
    id,
    query: new URLSearchParams(location.search),
    canWrite: canWrite(),
    session: currentSession(),
    navigate,
    base: BASE,
  };
  const v = factory(ctx);
  state.view = v;
  shell.main.append(v.el);
  document.title = (v.title ? v.title + ' · ' : '') + 'Berth';
}

async function start() {
  const s = currentSession();
  if (!s) return showLogin();
  buildShell();
  fillPicker();
  // The view and the cluster list load side by side: the view needs only the
  // cluster picked last time, and moves if the list says it is gone.
  const shown = render();
  try {
    const d = await get('/v1/clusters');
    const allowed = Array.isArray(s.clusters) && s.clusters.length ? new Set(s.clusters) : null;
    state.clusters = (d.clusters || []).filter((c) => c.status !== 'INACTIVE' && (!allowed || allowed.has(c.clusterName) || s.clusters.includes('*')));
  } catch (e) {
    if (e.status === 401) return;
    toast('Clusters could not be listed: ' + e.message, 'error');
  }
  if (!shell) return;
  const before = state.cluster;
  fillPicker();
  await shown;
  if (state.cluster !== before) await render();
  startStream({ catchUp: true });
  // The other views, fetched while the user reads the first one.
  const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 200));
  idle(() => { for (const load of Object.values(LAZY)) load().catch(() => {}); });
}

(async () => {
  performance.mark('berth-app');
  try {
    const s = await loadSession();
    if (!s) return showLogin();
    await start();
  } catch (e) {
    showLogin('The server did not answer: ' + e.message);
  }
})();
