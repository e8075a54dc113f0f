// Small DOM helpers shared by every view: element building, icons, formatting,
// status pills, resource bars, toasts and the confirmation dialog.

/** h('div.class#id', {attrs}, ...children): builds an element. Attributes named
 *  on* become listeners; `dataset`, `hidden`, `disabled`, `value` are set as
 *  properties; null/false children are skipped. */
export function h(spec, attrs, ...children) {
  if (attrs == null || typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  const m = spec.match(/^([a-z0-9-]*)((?:[.#][\w-]+)*)$/i);
  const el = document.createElement(m[1] || 'div');
  for (const part of m[2].match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'class') el.className = v;
    else if (['value', 'checked', 'disabled', 'hidden', 'selected', 'open'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

const ICONS = {
  overview: 'M3 13h8V3H3zm0 8h8v-6H3zm10 0h8V11h-8zm0-18v6h8V3z',
  nodes: 'M4 4h16v6H4zm0 10h16v6H4zm3-7h2M7 17h2',
  services: 'M12 2l9 5-9 5-9-5zm-9 10l9 5 9-5M3 17l9 5 9-5',
  tasks: 'M9 11l3 3 8-8M20 12v7a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h9',
  taskdefs: 'M14 3H6a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V9zm0 0v6h6M8 13h8M8 17h6',
  registry: 'M21 8l-9-5-9 5v8l9 5 9-5zM3 8l9 5 9-5M12 13v8',
  menu: 'M3 6h18M3 12h18M3 18h18',
  logout: 'M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4m7 14l5-5-5-5m5 5H9',
  copy: 'M9 9h11v11H9zM5 15H4V4h11v1',
  close: 'M6 6l12 12M18 6L6 18',
  plus: 'M12 5v14M5 12h14',
};

/** An inline SVG icon (stroke drawn, inherits currentColor). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', ICONS[name] || '');
  svg.append(p);
  return svg;
}

// ---- formatting ---------------------------------------------------------

/** Berth times are epoch seconds (float); ISO strings are accepted too. */
export function toDate(t) {
  if (t == null || t === '') return null;
  if (typeof t === 'number') return new Date(t * 1000);
  const d = new Date(t);
  return isNaN(d) ? null : d;
}

export function fmtTime(t) {
  const d = toDate(t);
  if (!d) return '—';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

export function ago(t) {
  const d = toDate(t);
  if (!d) return '—';
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 0) return 'just now';
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 86400) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

/** A <time> element showing "3m ago" with the full time as its title. */
export function timeEl(t) {
  const d = toDate(t);
  if (!d) return h('span.muted', '—');
  return h('time', { datetime: d.toISOString(), title: fmtTime(t) }, ago(t));
}

export function fmtBytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + ' ' + units[i];
}

export function fmtNum(n) {
  return n == null ? '—' : Number(n).toLocaleString();
}

export function shortId(id, n = 12) {
  return id ? String(id).slice(-n) : '';
}

/** The last path part of an ARN ("…/web:3" → "web:3"). */
export function arnTail(arn) {
  return arn ? String(arn).split('/').pop() : '';
}

// ---- status pills and bars ---------------------------------------------

const PILL_KIND = {
  ACTIVE: 'ok', RUNNING: 'ok', COMPLETED: 'ok', HEALTHY: 'ok', PRIMARY: 'ok', STEADY: 'ok', CONNECTED: 'ok',
  DRAINING: 'warn', PENDING: 'warn', PROVISIONING: 'warn', ACTIVATING: 'warn', IN_PROGRESS: 'warn',
  DEACTIVATING: 'warn', STOPPING: 'warn', DEPROVISIONING: 'warn', ROLLING: 'warn',
  STOPPED: 'off', INACTIVE: 'off', UNKNOWN: 'off',
  FAILED: 'bad', UNHEALTHY: 'bad', DISCONNECTED: 'bad', DRAINED: 'off',
};

export function pill(status, kind) {
  const s = String(status || 'UNKNOWN');
  return h('span.pill', { class: 'pill pill-' + (kind || PILL_KIND[s.toUpperCase()] || 'info') }, s.replace(/_/g, ' ').toLowerCase());
}

/** A resource bar: used of total, with a label. Width is set through CSSOM (CSP-safe). */
export function bar(used, total, label, fmt = fmtNum) {
  const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
  const fill = h('span.bar-fill');
  fill.style.width = pct.toFixed(1) + '%';
  if (pct >= 90) fill.classList.add('hot');
  else if (pct >= 70) fill.classList.add('warm');
  return h('div.bar-wrap', { title: `${label || ''} ${fmt(used)} of ${fmt(total)}`.trim() },
    label ? h('div.bar-label', h('span', label), h('span.muted', `${fmt(used)} / ${fmt(total)} (${Math.round(pct)}%)`)) : null,
    h('div.bar', { role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': String(total || 0), 'aria-valuenow': String(used || 0), 'aria-label': label || 'usage' }, fill));
}

export function empty(title, text, action) {
  return h('div.empty', h('p.empty-title', title), text ? h('p.muted', text) : null, action || null);
}

export function errorBox(err) {
  return h('div.alert.alert-error', { role: 'alert' }, errorMessage(err));
}

/** A message for an API error; a NotLeader refusal gets a link to the leader. */
export function errorMessage(err) {
  if (err && err.code === 'NotLeader') {
    const span = h('span', 'Changes are made on the leader');
    if (err.leader) span.append(': ', h('a', { href: err.leader }, err.leader));
    return span;
  }
  return err && err.message ? err.message : String(err);
}

/** Shows an error next to a control: fills (and reveals) the form's .field-error. */
export function showError(slot, err) {
  clear(slot);
  if (!err) { slot.hidden = true; return; }
  slot.hidden = false;
  slot.append(errorMessage(err));
}

// ---- toasts -------------------------------------------------------------

export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div.toast', { class: 'toast toast-' + kind }, message);
  box.append(t);
  setTimeout(() => t.classList.add('leaving'), 4000);
  setTimeout(() => t.remove(), 4600);
}

// ---- dialogs ------------------------------------------------------------

/** A modal <dialog> holding `body` (a node or nodes); Escape closes it.
 *  Returns {dialog, close}. `onClose` runs once when it closes. */
export function modal(title, body, onClose) {
  const closeBtn = h('button.btn-icon', { type: 'button', 'aria-label': 'Close' }, icon('close'));
  const dlg = h('dialog.dialog', { 'aria-labelledby': 'dlg-title' },
    h('div.dialog-head', h('h2#dlg-title', title), closeBtn),
    h('div.dialog-body', body));
  const close = () => { if (dlg.open) dlg.close(); };
  closeBtn.addEventListener('click', close);
  dlg.addEventListener('close', () => { dlg.remove(); if (onClose) onClose(); });
  document.body.append(dlg);
  dlg.showModal();
  return { dialog: dlg, close };
}

/** Asks for confirmation of a destructive action. `run` is called on confirm and
 *  may throw: its error is shown in the dialog, which then stays open.
 *  Resolves true when confirmed and done, false when cancelled. */
export function confirmAction({ title, text, confirmLabel = 'Delete', danger = true, run }) {
  return new Promise((resolve) => {
    let done = false;
    const err = h('p.field-error', { role: 'alert', hidden: true });
    const ok = h('button.btn', { type: 'submit', class: danger ? 'btn btn-danger' : 'btn btn-primary', dataset: { action: 'confirm' } }, confirmLabel);
    const cancel = h('button.btn', { type: 'button' }, 'Cancel');
    const form = h('form.dialog-form', { method: 'dialog' },
      h('p', text), err, h('div.dialog-actions', cancel, ok));
    const m = modal(title, form, () => resolve(done));
    cancel.addEventListener('click', m.close);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      ok.disabled = true;
      try {
        if (run) await run();
        done = true;
        m.close();
      } catch (e2) {
        showError(err, e2);
        ok.disabled = false;
      }
    });
    cancel.focus();
  });
}

/** A labelled form field: label + control + optional hint. */
export function field(label, control, hint) {
  const id = control.id || ('f-' + Math.random().toString(36).slice(2, 9));
  control.id = id;
  return h('div.field', h('label', { for: id }, label), control, hint ? h('p.hint', hint) : null);
}

export function copyButton(getText, label = 'Copy') {
  const b = h('button.btn.btn-small', { type: 'button' }, icon('copy'), h('span', label));
  b.addEventListener('click', async () => {
    const text = getText();
    try {
      await navigator.clipboard.writeText(text);
      toast('Copied to the clipboard');
    } catch {
      const ta = h('textarea.offscreen', { readonly: true }, text);
      document.body.append(ta);
      ta.select();
      const ok = document.execCommand && document.execCommand('copy');
      ta.remove();
      toast(ok ? 'Copied to the clipboard' : 'Copy failed: select the text and copy it', ok ? 'ok' : 'error');
    }
  });
  return b;
}
