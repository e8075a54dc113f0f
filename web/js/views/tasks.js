// Tasks: filtered and paged; a task page with its containers and a live log
// tail (follow, pause, download).
import { h, pill, timeEl, toast, confirmAction, empty, arnTail, field, fmtNum } from '../dom.js';
import { get, api, q, enc } from '../api.js';
import { viewShell, refresher, section, facts } from '../view.js';
import { table, Pager, PAGE_SIZE } from '../table.js';
import { taskTable } from './nodes.js';

export function tasksView(ctx) {
  const v = viewShell('tasks', 'Tasks', `Cluster ${ctx.cluster}`);
  const service = h('input', { type: 'text', name: 'service', value: ctx.query.get('service') || '', autocomplete: 'off' });
  const node = h('input', { type: 'text', name: 'node', value: ctx.query.get('node') || '', autocomplete: 'off' });
  const desired = h('select', { name: 'desiredStatus' },
    [['RUNNING', 'running'], ['STOPPED', 'stopped'], ['', 'any']].map(([val, label]) =>
      h('option', { value: val, selected: val === (ctx.query.get('desiredStatus') ?? 'RUNNING') }, label)));
  const family = h('input', { type: 'text', name: 'family', value: ctx.query.get('family') || '', autocomplete: 'off' });
  const err = h('div');
  const slot = h('div');
  const form = h('form.filters', { role: 'search' },
    field('Service', service), field('Node', node), field('Desired state', desired), field('Family', family),
    h('div.field.field-button', h('button.btn', { type: 'submit' }, 'Filter')));
  v.body.append(form, err, slot);
  const pager = new Pager(() => load());
  const load = refresher(async () => {
    const d = await get(q('/v1/tasks', {
      cluster: ctx.cluster, service: service.value.trim(), node: node.value.trim(), desiredStatus: desired.value,
      family: family.value.trim(), maxResults: PAGE_SIZE, nextToken: pager.token,
    }));
    const tasks = (d.tasks || []).slice(0, PAGE_SIZE);
    pager.next = d.nextToken || '';
    v.sub.textContent = `Cluster ${ctx.cluster}` + (d.total != null ? ` · ${fmtNum(d.total)} tasks` : '');
    slot.replaceChildren(taskTable(ctx, tasks, empty('No task matches', 'Tasks of services and standalone tasks show here.')),
      pager.controls(tasks.length, d.total));
    v.loaded();
  }, err);
  form.addEventListener('submit', (e) => { e.preventDefault(); pager.reset(); load(); });
  desired.addEventListener('change', () => { pager.reset(); load(); });
  load();
  return { el: v.el, title: 'Tasks', kinds: ['tasks'], refresh: load, unmount: load.stop };
}

const MAX_LOG_CHARS = 2 * 1024 * 1024;

/** The log panel: streams GET /v1/tasks/{id}/logs?follow=true&tail=200 with
 *  fetch and a reader. Pause stops showing new text (the buffer keeps filling);
 *  Stop ends the stream; Download saves the buffer. */
function logPanel(task, container) {
  const out = h('pre.log', { tabindex: '0', 'aria-label': 'Log output', dataset: { test: 'log' } });
  const status = h('span.muted.log-status', 'Not following');
  const follow = h('button.btn.btn-small.btn-primary', { type: 'button', dataset: { action: 'follow' } }, 'Follow');
  const pause = h('button.btn.btn-small', { type: 'button', disabled: true, 'aria-pressed': 'false', dataset: { action: 'pause' } }, 'Pause');
  const download = h('button.btn.btn-small', { type: 'button', dataset: { action: 'download' } }, 'Download');
  let buffer = '';
  let shown = 0;
  let paused = false;
  let abort = null;

  const flush = () => {
    if (paused) return;
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
    out.append(buffer.slice(shown));
    shown = buffer.length;
    if (atBottom) out.scrollTop = out.scrollHeight;
  };
  const stop = () => { if (abort) abort.abort(); abort = null; };
  const start = async () => {
    stop();
    buffer = ''; shown = 0; out.textContent = '';
    abort = new AbortController();
    const mine = abort;
    follow.textContent = 'Stop';
    follow.dataset.action = 'stop';
    pause.disabled = false;
    status.textContent = 'Connecting…';
    try {
      const res = await api('GET', q(`/v1/tasks/${enc(task.taskId)}/logs`, { follow: 'true', tail: 200, container }), undefined, { signal: mine.signal, raw: true });
      status.textContent = 'Following';
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += dec.decode(value, { stream: true });
        if (buffer.length > MAX_LOG_CHARS) {
          const cut = buffer.length - MAX_LOG_CHARS;
          buffer = buffer.slice(cut);
          shown = Math.max(0, shown - cut);
          out.textContent = buffer.slice(0, shown);
        }
        flush();
      }
      status.textContent = 'The log ended';
    } catch (e) {
      if (e.name === 'AbortError') status.textContent = 'Stopped';
      else status.textContent = 'Log unavailable: ' + e.message;
    }
    if (abort === mine) abort = null;
    follow.textContent = 'Follow';
    follow.dataset.action = 'follow';
    pause.disabled = true;
  };
  follow.addEventListener('click', () => (abort ? stop() : start()));
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    status.textContent = paused ? 'Paused (still receiving)' : 'Following';
    flush();
  });
  download.addEventListener('click', () => {
    const url = URL.createObjectURL(new Blob([buffer], { type: 'text/plain' }));
    const a = h('a', { href: url, download: `${task.taskId.slice(-12)}-${container || 'logs'}.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  const el = h('div.log-panel', h('div.log-bar', follow, pause, download, status), out);
  return { el, start, stop };
}

export function taskView(ctx) {
  const id = ctx.id;
  const v = viewShell('task', id.slice(-12), 'Task', [h('a', { href: `${ctx.base}/tasks` }, 'Tasks'), ' / ', id.slice(-12)]);
  const err = h('div');
  const info = h('div');
  const containers = h('div');
  const logs = h('div');
  v.body.append(err, info, section('Containers', containers), section('Logs', logs));
  let log = null;
  let stopBtn = null;
  const load = refresher(async () => {
    const d = await get(`/v1/tasks/${enc(id)}`);
    const t = d.task;
    v.sub.textContent = t.taskId;
    if (ctx.canWrite && t.desiredStatus !== 'STOPPED' && !stopBtn) {
      stopBtn = h('button.btn.btn-danger', { type: 'button', dataset: { action: 'stop-task' } }, 'Stop task');
      stopBtn.addEventListener('click', async () => {
        const ok = await confirmAction({
          title: 'Stop this task?', text: t.serviceName ? `Its service ${t.serviceName} starts a replacement.` : 'It does not come back.',
          confirmLabel: 'Stop', run: () => api('POST', `/v1/tasks/${enc(t.taskId)}/stop`, { reason: 'Stopped from the dashboard' }),
        });
        if (ok) toast('The task is stopping');
        load();
      });
      v.actions.append(stopBtn);
    }
    if (stopBtn && t.desiredStatus === 'STOPPED') { stopBtn.remove(); stopBtn = null; }
    info.replaceChildren(section('Task', facts([
      ['Status', h('span', pill(t.lastStatus), t.desiredStatus !== t.lastStatus ? h('span.muted', ` → ${(t.desiredStatus || '').toLowerCase()}`) : null)],
      ['Health', t.healthStatus ? pill(t.healthStatus) : '—'],
      ['Service', t.serviceName ? h('a', { href: `${ctx.base}/services/${enc(t.serviceName)}` }, t.serviceName) : (t.group || '—')],
      ['Task definition', h('a', { href: `${ctx.base}/taskdefs/${enc(arnTail(t.taskDefinitionArn).split(':')[0])}?rev=${arnTail(t.taskDefinitionArn).split(':')[1] || ''}` }, arnTail(t.taskDefinitionArn))],
      ['Node', t.nodeId ? h('a', { href: `${ctx.base}/nodes/${enc(t.nodeId)}` }, t.nodeId) : '—'],
      ['CPU / memory', `${t.cpu || '—'} / ${t.memory || '—'} MiB`],
      ['Created', timeEl(t.createdAt)],
      ['Started', timeEl(t.startedAt)],
      ['Stopped', t.stoppedAt ? timeEl(t.stoppedAt) : null],
      ['Stop reason', t.stoppedReason || null],
      ['Stop code', t.stopCode || null],
    ])));
    containers.replaceChildren(table([
      { label: 'Container', cell: (c) => c.name },
      { label: 'Status', cell: (c) => pill(c.lastStatus) },
      { label: 'Health', cell: (c) => (c.healthStatus ? pill(c.healthStatus) : '—') },
      { label: 'Ports', cell: (c) => ((c.networkBindings || []).length ? c.networkBindings.map((b) => `${b.hostPort}→${b.containerPort}/${b.protocol || 'tcp'}`).join(', ') : '—') },
      { label: 'Exit code', cls: 'num', cell: (c) => (c.exitCode != null ? String(c.exitCode) : '—') },
      { label: 'Reason', cell: (c) => c.reason || '—' },
    ], t.containers || [], (c) => c.name, empty('No containers')));
    if (!log) {
      const names = (t.containers || []).map((c) => c.name);
      const pick = h('select', { name: 'container' }, names.map((n) => h('option', { value: n }, n)));
      const build = () => { if (log) log.stop(); log = logPanel(t, pick.value); logs.replaceChildren(names.length > 1 ? field('Container', pick) : '', log.el); };
      pick.addEventListener('change', build);
      build();
    }
    v.loaded();
  }, err);
  load();
  return {
    el: v.el, title: 'Task ' + id.slice(-12), kinds: ['tasks'], refresh: load,
    unmount: () => { load.stop(); if (log) log.stop(); },
  };
}
