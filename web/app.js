// The dashboard's entry point: the session, the shell (sidebar, header with the
// cluster picker, role and logout), the router and the live change stream.
import { h, clear, icon, toast, pill } from './js/dom.js';
import { get, loadSession, logout, canWrite, currentSession, setUnauthorizedHandler, watch } from './js/api.js';
import { loginView } from './js/views/login.js';
import { overviewView } from './js/views/overview.js';
import { nodesView, nodeView } from './js/views/nodes.js';
import { servicesView, serviceView } from './js/views/services.js';
import { tasksView, taskView } from './js/views/tasks.js';
import { taskdefsView, familyView } from './js/views/taskdefs.js';
import { registryView, repositoryView } from './js/views/registry.js';

const BASE = '/ui';
const NAV = [
  { path: '', label: 'Overview', icon: 'overview' },
  { path: 'nodes', label: 'Nodes', icon: 'nodes' },
  { path: 'services', label: 'Services', icon: 'services' },
  { path: 'tasks', label: 'Tasks', icon: 'tasks' },
  { path: 'taskdefs', label: 'Task definitions', icon: 'taskdefs' },
  { path: 'registry', label: 'Registry', icon: 'registry' },
];

/** Picks the view for a path under /ui/: [factory, params]. */
function route(parts) {
  const [section, ...rest] = parts;
  const id = rest.length ? rest.map(decodeURIComponent).join('/') : null;
  switch (section || '') {
    case '': return [overviewView];
    case 'nodes': return id ? [nodeView, id] : [nodesView];
    case 'services': return id ? [serviceView, id] : [servicesView];
    case 'tasks': return id ? [taskView, id] : [tasksView];
    case 'taskdefs': return id ? [familyView, id] : [taskdefsView];
    case 'registry': return id ? [repositoryView, id] : [registryView];
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

function showLogin(message) {
  stopStream();
  if (state.view && state.view.unmount) state.view.unmount();
  state.view = null;
  shell = null;
  clear(root);
  root.className = 'login-page';
  root.removeAttribute('aria-busy');
  root.append(loginView({
    message,
    onLogin: async () => { await start(); },
  }));
}

function stopStream() {
  if (state.stopStream) state.stopStream();
  state.stopStream = null;
}

function startStream() {
  stopStream();
  state.stopStream = watch(state.cluster, (kinds) => {
    const v = state.view;
    if (!v || !v.refresh) return;
    if (kinds === null || !v.kinds || v.kinds.some((k) => kinds.has(k))) v.refresh(kinds);
  }, (up) => {
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

function render() {
  if (!shell) return;
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : '/';
  const parts = path.split('/').filter(Boolean);
  const [factory, id] = route(parts);
  for (const a of shell.navList.querySelectorAll('a')) {
    const navPath = a.dataset.nav === 'overview' ? '' : a.dataset.nav;
    if ((parts[0] || '') === navPath) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  root.classList.remove('nav-open');
  if (state.view && state.view.unmount) state.view.unmount();
  clear(shell.main);
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
  try {
    const d = await get('/v1/clusters');
    const allowed = Array.isArray(s.clusters) && s.clusters.length ? new Set(s.clusters) : null;
    state.clusters = (d.clusters || []).filter((c) => c.status !== 'INACTIVE' && (!allowed || allowed.has(c.clusterName) || s.clusters.includes('*')));
  } catch (e) {
    if (e.status === 401) return;
    toast('Clusters could not be listed: ' + e.message, 'error');
  }
  fillPicker();
  startStream();
  render();
}

(async () => {
  try {
    const s = await loadSession();
    if (!s) return showLogin();
    await start();
  } catch (e) {
    showLogin('The server did not answer: ' + e.message);
  }
})();
