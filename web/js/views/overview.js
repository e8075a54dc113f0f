// Overview: nodes by state, CPU and memory allocated against registered (overall
// and per zone), tasks, the services that are not steady first, recent events.
import { h, bar, fmtNum, timeEl, pill, empty, arnTail } from '../dom.js';
import { get } from '../api.js';
import { overviewPath } from '../boot.js';
import { viewShell, refresher, section } from '../view.js';
import { table } from '../table.js';

function stat(label, value, key, kind, href) {
  const num = h('span.stat-value', { dataset: { stat: key } }, fmtNum(value));
  const inner = [num, h('span.stat-label', label)];
  return href
    ? h('a.stat', { href, class: 'stat stat-' + (kind || 'plain') }, inner)
    : h('div.stat', { class: 'stat stat-' + (kind || 'plain') }, inner);
}

const MEM = (n) => (n == null ? '—' : n >= 1024 ? (n / 1024).toFixed(1) + ' GiB' : n + ' MiB');
const CPU = (n) => (n == null ? '—' : (n / 1024).toFixed(n % 1024 ? 1 : 0) + ' vCPU');

export function overviewView(ctx) {
  const v = viewShell('overview', 'Overview', `Cluster ${ctx.cluster}`);
  const err = h('div');
  const content = h('div.overview');
  v.body.append(err, content);
  const base = ctx.base;

  const load = refresher(async () => {
    const o = await get(overviewPath(ctx.cluster));
    const n = o.nodes || {};
    const t = o.tasks || {};
    const r = o.resources || {};
    const cpu = r.cpu || {};
    const mem = r.memory || {};
    const services = o.services || [];
    const zones = o.zones || [];
    const events = o.events || [];
    content.replaceChildren(
      h('div.stats',
        stat('Nodes', n.total, 'nodes-total', 'plain', `${base}/nodes`),
        stat('Active', n.active, 'nodes-active', 'ok', `${base}/nodes?status=ACTIVE`),
        stat('Draining', n.draining, 'nodes-draining', n.draining ? 'warn' : 'plain', `${base}/nodes?status=DRAINING`),
        stat('Disconnected', n.disconnected, 'nodes-disconnected', n.disconnected ? 'bad' : 'plain'),
        stat('Tasks running', t.running, 'tasks-running', 'ok', `${base}/tasks?desiredStatus=RUNNING`),
        stat('Tasks pending', t.pending, 'tasks-pending', t.pending ? 'warn' : 'plain'),
        stat('Stopped last hour', t.stoppedLastHour, 'tasks-stopped-last-hour', 'plain', `${base}/tasks?desiredStatus=STOPPED`),
        stat('Services', o.servicesTotal != null ? o.servicesTotal : services.length, 'services-total', 'plain', `${base}/services`)),
      h('div.grid-2',
        section('Capacity',
          bar(cpu.allocated, cpu.registered, 'CPU allocated', CPU),
          bar(mem.allocated, mem.registered, 'Memory allocated', MEM),
          zones.length ? h('h3.sub-title', 'By zone') : null,
          zones.map((z) => h('div.zone', { dataset: { id: z.zone || 'none' } },
            h('div.zone-head', h('strong', z.zone || '(no zone)'), h('span.muted', `${fmtNum(z.nodes)} node${z.nodes === 1 ? '' : 's'}`)),
            bar((z.cpu || {}).allocated, (z.cpu || {}).registered, 'CPU', CPU),
            bar((z.memory || {}).allocated, (z.memory || {}).registered, 'Memory', MEM)))),
        section('Recent events',
          events.length
            ? h('ul.events', events.map((e) => h('li', timeEl(e.createdAt), ' ',
              e.service ? h('a', { href: `${base}/services/${encodeURIComponent(e.service)}` }, e.service) : null, ' ',
              h('span', e.message))))
            : empty('No events yet', 'Service events show here as deployments happen.'))),
      section('Services' + (services.length ? ' (not steady first)' : ''),
        table([
          { label: 'Service', cell: (s) => h('a', { href: `${base}/services/${encodeURIComponent(s.serviceName)}` }, s.serviceName) },
          { label: 'State', cell: (s) => (s.steady ? pill('steady', 'ok') : pill('deploying', 'warn')) },
          { label: 'Desired', cls: 'num', cell: (s) => fmtNum(s.desiredCount) },
          { label: 'Running', cls: 'num', cell: (s) => fmtNum(s.runningCount) },
          { label: 'Pending', cls: 'num', cell: (s) => fmtNum(s.pendingCount) },
          { label: 'Task definition', cell: (s) => arnTail(s.taskDefinition) },
        ], services, (s) => s.serviceName,
        empty('No services', 'Create a service from a task definition to run it on the nodes.',
          ctx.canWrite ? h('a.btn.btn-primary', { href: `${base}/services?create=1` }, 'Create a service') : null))),
    );
    v.loaded();
  }, err);
  load();
  return {
    el: v.el, title: 'Overview',
    kinds: ['nodes', 'tasks', 'services'],
    refresh: load,
    unmount: load.stop,
  };
}
