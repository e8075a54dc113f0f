// What every view shares: its root (data-view, data-loaded hooks), a title row
// with actions, and a refresher that never runs two loads of one view at once.
import { h, errorBox } from './dom.js';

export function viewShell(name, title, subtitle, crumbs) {
  const actions = h('div.view-actions');
  const body = h('div.view-body');
  const heading = h('h1', title);
  const sub = h('p.muted.subtitle', subtitle || '');
  const el = h('section.view', { dataset: { view: name } },
    crumbs ? h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, crumbs) : null,
    h('div.view-head', h('div.view-title', heading, sub), actions), body);
  return {
    el, actions, body, heading, sub,
    loaded() { el.dataset.loaded = 'true'; },
  };
}

/** Wraps an async load(): calls while one runs are folded into one more run
 *  after it. Errors are shown in `errorSlot` (cleared on success). The returned
 *  function resolves when the run it joined is over. */
export function refresher(load, errorSlot) {
  let running = null;
  let again = false;
  let alive = true;
  const run = async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      do {
        again = false;
        try {
          await load();
          if (errorSlot) errorSlot.replaceChildren();
        } catch (e) {
          if (e.name === 'AbortError' || e.status === 401 || !alive) continue;
          if (errorSlot) errorSlot.replaceChildren(errorBox(e));
        }
      } while (again && alive);
    })();
    try { await running; } finally { running = null; }
  };
  run.stop = () => { alive = false; };
  return run;
}

export function section(title, ...children) {
  return h('section.card', h('h2.card-title', title), ...children);
}

/** A definition list of [label, value] pairs. */
export function facts(pairs) {
  return h('dl.facts', pairs.filter(Boolean).map(([k, v]) => h('div.fact', h('dt', k), h('dd', v == null || v === '' ? '—' : v))));
}
