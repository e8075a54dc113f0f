// Services: the list, creating one from a task definition, and a service page
// with its deployments, events and tasks; scale, update, roll back, delete.
import { h, pill, timeEl, fmtNum, toast, confirmAction, empty, arnTail, field, showError, modal, icon, shortId } from '../dom.js';
import { get, api, q, enc } from '../api.js';
import { viewShell, refresher, section } from '../view.js';
import { table, Pager, PAGE_SIZE } from '../table.js';
import { taskTable } from './nodes.js';

function steady(s) {
  return s.runningCount === s.desiredCount && !s.pendingCount && (s.deployments || []).length <= 1;
}

function stateOf(s) {
  if (s.status && s.status !== 'ACTIVE') return pill(s.status);
  return steady(s) ? pill('steady', 'ok') : pill('deploying', 'warn');
}

/** The create-service dialog: a name, a task definition (family, latest revision
 *  or a chosen one) and a count. */
async function createDialog(ctx, done) {
  const name = h('input', { name: 'serviceName', required: true, pattern: '[A-Za-z0-9_\\-]{1,255}', autocomplete: 'off' });
  const family = h('select', { name: 'taskDefinition', required: true }, h('option', { value: '' }, 'Loading…'));
  const count = h('input', { name: 'desiredCount', type: 'number', min: '0', max: '10000', value: '1', required: true });
  const err = h('p.field-error', { role: 'alert', hidden: true });
  const submit = h('button.btn.btn-primary', { type: 'submit' }, 'Create service');
  const form = h('form.dialog-form', { dataset: { form: 'create-service' } },
    field('Name', name), field('Task definition', family, 'The latest active revision of the family.'), field('Desired count', count),
    err, h('div.dialog-actions', submit));
  const m = modal('Create a service', form);
  name.focus();
  try {
    const d = await get('/v1/taskdefinitions/families');
    const fams = d.families || [];
    family.replaceChildren(...(fams.length
      ? fams.map((f) => h('option', { value: f, selected: f === ctx.query.get('family') }, f))
      : [h('option', { value: '' }, 'No task definitions: register one first')]));
  } catch (e) { showError(err, e); }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    showError(err, null);
    try {
      const r = await api('POST', '/v1/services', {
        cluster: ctx.cluster, serviceName: name.value.trim(), taskDefinition: family.value, desiredCount: Number(count.value),
      });
      toast(`Service ${r.service.serviceName} created`);
      m.close();
      done(r.service);
    } catch (e2) {
      showError(err, e2);
      submit.disabled = false;
    }
  });
}

export function servicesView(ctx) {
  const v = viewShell('services', 'Services', `Cluster ${ctx.cluster}`);
  const err = h('div');
  const slot = h('div');
  v.body.append(err, slot);
  const pager = new Pager(() => load());
  const openCreate = () => createDialog(ctx, (s) => ctx.navigate(`${ctx.base}/services/${enc(s.serviceName)}`));
  if (ctx.canWrite) {
    const b = h('button.btn.btn-primary', { type: 'button', dataset: { action: 'create-service' } }, icon('plus'), h('span', 'Create service'));
    b.addEventListener('click', openCreate);
    v.actions.append(b);
  }
  const load = refresher(async () => {
    const d = await get(q('/v1/services', { cluster: ctx.cluster, maxResults: PAGE_SIZE, nextToken: pager.token }));
    const services = (d.services || []).slice(0, PAGE_SIZE);
    pager.next = d.nextToken || '';
    slot.replaceChildren(table([
      { label: 'Service', cell: (s) => h('a', { href: `${ctx.base}/services/${enc(s.serviceName)}` }, s.serviceName) },
      { label: 'State', cell: stateOf },
      { label: 'Desired', cls: 'num', cell: (s) => fmtNum(s.desiredCount) },
      { label: 'Running', cls: 'num', cell: (s) => fmtNum(s.runningCount) },
      { label: 'Pending', cls: 'num', cell: (s) => fmtNum(s.pendingCount) },
      { label: 'Task definition', cell: (s) => arnTail(s.taskDefinition) },
      { label: 'Rollout', cell: (s) => { const p = (s.deployments || []).find((x) => x.status === 'PRIMARY'); return p && p.rolloutState ? pill(p.rolloutState) : '—'; } },
      { label: 'Created', cell: (s) => timeEl(s.createdAt) },
    ], services, (s) => s.serviceName,
    empty('No services', 'A service keeps a number of tasks of a task definition running.',
      ctx.canWrite ? h('button.btn.btn-primary', { type: 'button', onclick: openCreate }, 'Create a service') : null)),
    pager.controls(services.length, d.total));
    v.loaded();
  }, err);
  load();
  if (ctx.canWrite && ctx.query.get('create')) openCreate();
  return { el: v.el, title: 'Services', kinds: ['services'], refresh: load, unmount: load.stop };
}

/** family:revision of a task definition ARN or name. */
function familyRev(td) {
  const t = arnTail(td);
  const i = t.lastIndexOf(':');
  return i < 0 ? { family: t, revision: null } : { family: t.slice(0, i), revision: Number(t.slice(i + 1)) };
}

export function serviceView(ctx) {
  const name = ctx.id;
  const v = viewShell('service', name, `Service in ${ctx.cluster}`, [h('a', { href: `${ctx.base}/services` }, 'Services'), ' / ', name]);
  const err = h('div');
  const info = h('div');
  const controls = h('div');
  const deployments = h('div');
  const events = h('div');
  const tasks = h('div');
  v.body.append(err, info, controls,
    section('Deployments', deployments), h('div.grid-2', section('Tasks', tasks), section('Events', events)));
  let current = null;
  let controlsBuilt = false;

  function buildControls() {
    if (!ctx.canWrite || controlsBuilt) return;
    controlsBuilt = true;
    const count = h('input', { type: 'number', min: '0', max: '10000', name: 'desiredCount', value: String(current.desiredCount) });
    const scaleErr = h('p.field-error', { role: 'alert', hidden: true });
    const scaleBtn = h('button.btn', { type: 'submit', dataset: { action: 'scale' } }, 'Scale');
    const scaleForm = h('form.inline-form', { dataset: { form: 'scale' } }, field('Desired count', count), scaleBtn, scaleErr);
    scaleForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      scaleBtn.disabled = true;
      showError(scaleErr, null);
      try {
        await api('PATCH', q(`/v1/services/${enc(name)}`, { cluster: ctx.cluster }), { desiredCount: Number(count.value) });
        toast(`${name} scaled to ${count.value}`);
        load();
      } catch (e2) { showError(scaleErr, e2); }
      scaleBtn.disabled = false;
    });

    const rev = h('select', { name: 'taskDefinition' });
    const revErr = h('p.field-error', { role: 'alert', hidden: true });
    const revBtn = h('button.btn', { type: 'submit', dataset: { action: 'update' } }, 'Update');
    const revForm = h('form.inline-form', { dataset: { form: 'update' } }, field('Revision', rev), revBtn, revErr);
    const back = h('button.btn', { type: 'button', dataset: { action: 'rollback' } }, 'Roll back');
    const del = h('button.btn.btn-danger', { type: 'button', dataset: { action: 'delete-service' } }, 'Delete');
    const update = async (td, what) => {
      await api('PATCH', q(`/v1/services/${enc(name)}`, { cluster: ctx.cluster }), { taskDefinition: td });
      toast(`${name} ${what} ${td}`);
      load();
    };
    revForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      revBtn.disabled = true;
      showError(revErr, null);
      try { await update(rev.value, 'now deploys'); } catch (e2) { showError(revErr, e2); }
      revBtn.disabled = false;
    });
    back.addEventListener('click', async () => {
      const { family, revision } = familyRev(current.taskDefinition);
      const d = await get(q('/v1/taskdefinitions', { familyPrefix: family, status: 'ALL' })).catch(() => ({ taskDefinitions: [] }));
      const older = (d.taskDefinitions || []).filter((t) => t.family === family && t.revision < revision).map((t) => t.revision);
      if (!older.length) { showError(revErr, { message: `No revision of ${family} before ${revision}` }); return; }
      const prev = `${family}:${Math.max(...older)}`;
      await confirmAction({
        title: `Roll back ${name}?`, text: `The service deploys ${prev} in place of ${family}:${revision}.`,
        confirmLabel: 'Roll back', danger: false, run: () => update(prev, 'rolls back to'),
      });
    });
    del.addEventListener('click', async () => {
      const ok = await confirmAction({
        title: `Delete ${name}?`,
        text: `Its ${current.runningCount} running tasks stop and the service disappears once they have stopped.`,
        run: () => api('DELETE', q(`/v1/services/${enc(name)}`, { cluster: ctx.cluster, force: 'true' })),
      });
      if (ok) { toast(`${name} is being deleted`); ctx.navigate(`${ctx.base}/services`); }
    });
    v.actions.append(del);
    controls.replaceChildren(section('Change', h('div.control-row', scaleForm, revForm, h('div.field.field-button', back))));
    controls.fillRevisions = async () => {
      const { family, revision } = familyRev(current.taskDefinition);
      const d = await get(q('/v1/taskdefinitions', { familyPrefix: family, status: 'ACTIVE' }));
      const revs = (d.taskDefinitions || []).filter((t) => t.family === family).map((t) => t.revision).sort((a, b) => b - a);
      rev.replaceChildren(...revs.map((r) => h('option', { value: `${family}:${r}`, selected: r === revision }, `${family}:${r}${r === revision ? ' (current)' : ''}`)));
      back.disabled = !revs.some((r) => r < revision) && revision <= 1;
    };
  }

  const load = refresher(async () => {
    const [d, ev, t] = await Promise.all([
      get(q(`/v1/services/${enc(name)}`, { cluster: ctx.cluster })),
      get(q(`/v1/services/${enc(name)}/events`, { cluster: ctx.cluster })),
      get(q('/v1/tasks', { cluster: ctx.cluster, service: name, desiredStatus: 'RUNNING', maxResults: PAGE_SIZE })),
    ]);
    current = d.service;
    const s = current;
    info.replaceChildren(h('div.stats',
      h('div.stat', h('span.stat-value', { dataset: { stat: 'desired' } }, fmtNum(s.desiredCount)), h('span.stat-label', 'Desired')),
      h('div.stat.stat-ok', h('span.stat-value', { dataset: { stat: 'running' } }, fmtNum(s.runningCount)), h('span.stat-label', 'Running')),
      h('div.stat', { class: s.pendingCount ? 'stat stat-warn' : 'stat' }, h('span.stat-value', { dataset: { stat: 'pending' } }, fmtNum(s.pendingCount)), h('span.stat-label', 'Pending')),
      h('div.stat', h('span.stat-value.stat-text', stateOf(s)), h('span.stat-label', arnTail(s.taskDefinition)))));
    buildControls();
    if (controls.fillRevisions) controls.fillRevisions().catch(() => {});
    deployments.replaceChildren(table([
      { label: 'Deployment', cell: (x) => h('span.mono', shortId(x.id, 10)) },
      { label: 'Status', cell: (x) => pill(x.status) },
      { label: 'Task definition', cell: (x) => arnTail(x.taskDefinition) },
      { label: 'Desired', cls: 'num', cell: (x) => fmtNum(x.desiredCount) },
      { label: 'Running', cls: 'num', cell: (x) => fmtNum(x.runningCount) },
      { label: 'Pending', cls: 'num', cell: (x) => fmtNum(x.pendingCount) },
      { label: 'Failed', cls: 'num', cell: (x) => fmtNum(x.failedTasks) },
      { label: 'Rollout', cell: (x) => h('span', x.rolloutState ? pill(x.rolloutState) : '—', x.rolloutStateReason ? h('span.muted', ' ' + x.rolloutStateReason) : null) },
      { label: 'Updated', cell: (x) => timeEl(x.updatedAt || x.createdAt) },
    ], s.deployments || [], (x) => x.id, empty('No deployments')));
    const evs = (ev.events || s.events || []).slice(0, 50);
    events.replaceChildren(evs.length
      ? h('ul.events', evs.map((e) => h('li', timeEl(e.createdAt), ' ', h('span', e.message))))
      : empty('No events yet'));
    tasks.replaceChildren(taskTable(ctx, (t.tasks || []).slice(0, PAGE_SIZE), empty('No running tasks')));
    v.loaded();
  }, err);
  load();
  return { el: v.el, title: name, kinds: ['services', 'tasks'], refresh: load, unmount: load.stop };
}

