// Nodes: a paged, filtered table with resource bars; a node page with its
// attributes and tasks, and drain / activate.
import { h, bar, pill, timeEl, fmtNum, toast, confirmAction, empty, arnTail, shortId, field } from '../dom.js';
import { get, api, q, enc } from '../api.js';
import { viewShell, refresher, section, facts } from '../view.js';
import { table, Pager, PAGE_SIZE } from '../table.js';

function resource(list, name) {
  const r = (list || []).find((x) => x.name === name);
  return r ? r.integerValue || 0 : 0;
}

export function nodeUsage(n) {
  const cpuReg = resource(n.registeredResources, 'CPU');
  const memReg = resource(n.registeredResources, 'MEMORY');
  return {
    cpuReg, memReg,
    cpuUsed: cpuReg - resource(n.remainingResources, 'CPU'),
    memUsed: memReg - resource(n.remainingResources, 'MEMORY'),
  };
}

function attr(n, name) {
  const a = (n.attributes || []).find((x) => x.name === name);
  return a ? a.value : null;
}

function agentVersion(n) {
  return (n.versionInfo && (n.versionInfo.agentVersion || n.versionInfo.version)) || n.agentVersion || attr(n, 'agentVersion') || '—';
}

function nodeState(n) {
  if (n.agentConnected === false) return pill('disconnected', 'bad');
  return pill(n.status);
}

/** The drain or activate button for a node (none for read-only sessions). */
function drainButton(ctx, n, after) {
  if (!ctx.canWrite) return null;
  const draining = n.status === 'DRAINING';
  const b = h('button.btn.btn-small', { type: 'button', dataset: { action: draining ? 'activate' : 'drain' } }, draining ? 'Activate' : 'Drain');
  b.addEventListener('click', async () => {
    const run = () => api('POST', `/v1/nodes/${enc(n.nodeId)}/${draining ? 'activate' : 'drain'}`);
    if (draining) {
      b.disabled = true;
      try { await run(); toast(`${n.nodeId} is active`); } catch (e) { toast(e.message, 'error'); }
      b.disabled = false;
    } else {
      const ok = await confirmAction({
        title: `Drain ${n.nodeId}?`,
        text: 'The node takes no new tasks, and its service tasks move to other nodes.',
        confirmLabel: 'Drain', run,
      });
      if (ok) toast(`${n.nodeId} is draining`);
    }
    if (after) after();
  });
  return b;
}

export function nodesView(ctx) {
  const v = viewShell('nodes', 'Nodes', `Cluster ${ctx.cluster}`);
  const status = h('select', { name: 'status' },
    ['', 'ACTIVE', 'DRAINING'].map((s) => h('option', { value: s, selected: s === (ctx.query.get('status') || '') }, s ? s.toLowerCase() : 'any')));
  const search = h('input', { type: 'search', name: 'q', placeholder: 'id, hostname or attribute', value: ctx.query.get('q') || '' });
  const err = h('div');
  const slot = h('div');
  v.body.append(h('form.filters', { role: 'search' }, field('Status', status), field('Search', search)), err, slot);
  const pager = new Pager(() => load());

  const load = refresher(async () => {
    const d = await get(q('/v1/nodes', { cluster: ctx.cluster, status: status.value, q: search.value.trim(), maxResults: PAGE_SIZE, nextToken: pager.token }));
    const nodes = (d.containerInstances || []).slice(0, PAGE_SIZE);
    pager.next = d.nextToken || '';
    v.sub.textContent = `Cluster ${ctx.cluster}` + (d.total != null ? ` · ${fmtNum(d.total)} nodes` : '');
    slot.replaceChildren(
      table([
        { label: 'Node', cell: (n) => h('a', { href: `${ctx.base}/nodes/${enc(n.nodeId)}` }, n.nodeId) },
        { label: 'State', cell: nodeState },
        { label: 'Zone', cell: (n) => attr(n, 'zone') || '—' },
        { label: 'CPU', cls: 'bar-cell', cell: (n) => { const u = nodeUsage(n); return bar(u.cpuUsed, u.cpuReg); } },
        { label: 'Memory', cls: 'bar-cell', cell: (n) => { const u = nodeUsage(n); return bar(u.memUsed, u.memReg); } },
        { label: 'Tasks', cls: 'num', cell: (n) => fmtNum((n.runningTasksCount || 0) + (n.pendingTasksCount || 0)) },
        { label: 'Agent', cell: agentVersion },
        { label: 'Heartbeat', cell: (n) => timeEl(n.lastHeartbeatAt) },
        ...(ctx.canWrite ? [{ label: 'Actions', cell: (n) => drainButton(ctx, n, load) }] : []),
      ], nodes, (n) => n.nodeId,
      empty(status.value || search.value ? 'No node matches' : 'No nodes yet',
        status.value || search.value ? 'Change the filter to see more.' : 'Start an agent (berth agent --server … --token …) and its node shows here.')),
      pager.controls(nodes.length, d.total));
    v.loaded();
  }, err);
  let debounce = null;
  status.addEventListener('change', () => { pager.reset(); load(); });
  search.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(() => { pager.reset(); load(); }, 300); });
  search.closest && v.body.querySelector('form').addEventListener('submit', (e) => { e.preventDefault(); pager.reset(); load(); });
  load();
  return { el: v.el, title: 'Nodes', kinds: ['nodes'], refresh: load, unmount: load.stop };
}

export function nodeView(ctx) {
  const id = ctx.id;
  const v = viewShell('node', id, 'Node', [h('a', { href: `${ctx.base}/nodes` }, 'Nodes'), ' / ', id]);
  const err = h('div');
  const info = h('div');
  const tasks = h('div');
  v.body.append(err, info, section('Running tasks on this node', tasks));
  const load = refresher(async () => {
    const [d, t] = await Promise.all([
      get(`/v1/nodes/${enc(id)}`),
      get(q('/v1/tasks', { cluster: ctx.cluster, node: id, desiredStatus: 'RUNNING', maxResults: PAGE_SIZE })),
    ]);
    const n = d.containerInstance;
    const u = nodeUsage(n);
    v.actions.replaceChildren(...[drainButton(ctx, n, load)].filter(Boolean));
    info.replaceChildren(h('div.grid-2',
      section('Node', facts([
        ['State', nodeState(n)],
        ['Cluster', n.cluster || arnTail(n.clusterArn)],
        ['Hostname', n.hostname || n.ec2InstanceId],
        ['Agent version', agentVersion(n)],
        ['Registered', timeEl(n.registeredAt)],
        ['Last heartbeat', timeEl(n.lastHeartbeatAt)],
        ['Running tasks', fmtNum(n.runningTasksCount)],
        ['Pending tasks', fmtNum(n.pendingTasksCount)],
      ]), bar(u.cpuUsed, u.cpuReg, 'CPU'), bar(u.memUsed, u.memReg, 'Memory (MiB)')),
      section('Attributes', (n.attributes || []).length
        ? h('ul.tags', n.attributes.map((a) => h('li.tag', h('span.tag-k', a.name), a.value != null ? h('span.tag-v', a.value) : null)))
        : empty('No attributes'))));
    tasks.replaceChildren(taskTable(ctx, (t.tasks || []).slice(0, PAGE_SIZE)));
    v.loaded();
  }, err);
  load();
  return { el: v.el, title: id, kinds: ['nodes', 'tasks'], refresh: load, unmount: load.stop };
}

/** The task table used by the node, service and tasks views. */
export function taskTable(ctx, tasks, emptyState) {
  return table([
    { label: 'Task', cell: (t) => h('a.mono', { href: `${ctx.base}/tasks/${enc(t.taskId)}` }, shortId(t.taskId)) },
    { label: 'Status', cell: (t) => h('span.status-pair', pill(t.lastStatus), t.desiredStatus !== t.lastStatus ? h('span.muted', ` → ${(t.desiredStatus || '').toLowerCase()}`) : null) },
    { label: 'Health', cell: (t) => (t.healthStatus && t.healthStatus !== 'UNKNOWN' ? pill(t.healthStatus) : h('span.muted', '—')) },
    { label: 'Service', cell: (t) => (t.serviceName ? h('a', { href: `${ctx.base}/services/${enc(t.serviceName)}` }, t.serviceName) : h('span.muted', t.group || '—')) },
    { label: 'Definition', cell: (t) => arnTail(t.taskDefinitionArn) },
    { label: 'Node', cell: (t) => (t.nodeId ? h('a', { href: `${ctx.base}/nodes/${enc(t.nodeId)}` }, t.nodeId) : '—') },
    { label: 'Started', cell: (t) => timeEl(t.startedAt || t.createdAt) },
  ], tasks, (t) => t.taskId, emptyState || empty('No tasks'));
}
