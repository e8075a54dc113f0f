// Task definitions: families, a family's revisions with the JSON of one, and
// registering a new revision from pasted JSON (errors shown by field path).
import { h, pill, timeEl, toast, confirmAction, empty, field, showError, modal, icon, clear } from '../dom.js';
import { get, api, q, enc } from '../api.js';
import { viewShell, refresher, section } from '../view.js';
import { table } from '../table.js';
import { locate, pathOf } from '../jsonpath.js';

const EXAMPLE = JSON.stringify({
  family: 'web',
  containerDefinitions: [{ name: 'web', image: 'nginx:1.25', cpu: 256, memory: 128, essential: true, portMappings: [{ containerPort: 80 }] }],
}, null, 2);

/** The register dialog: a JSON editor whose errors select the field they name. */
function registerDialog(ctx, initial, done) {
  const editor = h('textarea.code-editor', { name: 'taskDefinition', rows: '18', spellcheck: 'false', 'aria-describedby': 'td-error' }, initial || EXAMPLE);
  const err = h('div#td-error.field-error', { role: 'alert', hidden: true });
  const submit = h('button.btn.btn-primary', { type: 'submit' }, 'Register');
  const form = h('form.dialog-form.wide', { dataset: { form: 'register-taskdef' } },
    field('Task definition JSON (ECS RegisterTaskDefinition)', editor), err, h('div.dialog-actions', submit));
  const m = modal('Register a task definition', form);
  editor.focus();
  const fail = (e) => {
    clear(err);
    err.hidden = false;
    const path = pathOf(e.message);
    if (path) {
      const span = locate(editor.value, path);
      const jump = h('button.btn-link', { type: 'button', title: 'Select this field in the editor' }, h('code.path', path));
      const select = () => { if (span) { editor.focus(); editor.setSelectionRange(span.start, span.end); } };
      jump.addEventListener('click', select);
      err.append(jump, ': ', e.message.slice(e.message.indexOf(':') + 1).trim());
      editor.classList.add('invalid');
      select();
    } else {
      err.append(e.message);
      const m2 = /line (\d+)/.exec(e.message);
      if (m2) {
        const lines = editor.value.split('\n');
        const start = lines.slice(0, Number(m2[1]) - 1).join('\n').length + 1;
        editor.setSelectionRange(start, start + (lines[Number(m2[1]) - 1] || '').length);
      }
    }
  };
  editor.addEventListener('input', () => editor.classList.remove('invalid'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(err, null);
    submit.disabled = true;
    try {
      const r = await api('POST', '/v1/taskdefinitions', editor.value);
      const td = r.taskDefinition;
      toast(`Registered ${td.family}:${td.revision}`);
      m.close();
      done(td);
    } catch (e2) {
      if (e2.status >= 400 && e2.status < 500 && e2.code !== 'Forbidden') fail(e2);
      else showError(err, e2);
    }
    submit.disabled = false;
  });
}

function registerButton(ctx, initial) {
  const b = h('button.btn.btn-primary', { type: 'button', dataset: { action: 'register-taskdef' } }, icon('plus'), h('span', 'Register'));
  b.addEventListener('click', () => registerDialog(ctx, typeof initial === 'function' ? initial() : initial,
    (td) => ctx.navigate(`${ctx.base}/taskdefs/${enc(td.family)}?rev=${td.revision}`)));
  return b;
}

export function taskdefsView(ctx) {
  const v = viewShell('taskdefs', 'Task definitions', 'Families with an active revision');
  const err = h('div');
  const slot = h('div');
  v.body.append(err, slot);
  if (ctx.canWrite) v.actions.append(registerButton(ctx));
  const load = refresher(async () => {
    const d = await get('/v1/taskdefinitions/families');
    const fams = (d.families || []).slice(0, 100);
    slot.replaceChildren(table([
      { label: 'Family', cell: (f) => h('a', { href: `${ctx.base}/taskdefs/${enc(f)}` }, f) },
    ], fams, (f) => f, empty('No task definitions', 'A task definition says which containers a task runs.',
      ctx.canWrite ? registerButton(ctx) : null)));
    v.loaded();
  }, err);
  load();
  return { el: v.el, title: 'Task definitions', kinds: ['taskdefinitions'], refresh: load, unmount: load.stop };
}

/** The JSON to start a new revision from: the definition without what the
 *  server fills in. */
function editable(td) {
  const skip = new Set(['taskDefinitionArn', 'revision', 'status', 'registeredAt', 'registeredBy', 'deregisteredAt', 'requiresAttributes', 'compatibilities']);
  return JSON.stringify(Object.fromEntries(Object.entries(td).filter(([k]) => !skip.has(k))), null, 2);
}

export function familyView(ctx) {
  const family = ctx.id;
  const v = viewShell('taskdef', family, 'Task definition family', [h('a', { href: `${ctx.base}/taskdefs` }, 'Task definitions'), ' / ', family]);
  const err = h('div');
  const revs = h('div');
  const json = h('div');
  v.body.append(err, h('div.grid-side', section('Revisions', revs), json));
  let selected = Number(ctx.query.get('rev')) || null;
  let shown = null;
  if (ctx.canWrite) v.actions.append(registerButton(ctx, () => (shown ? editable(shown) : undefined)));

  const showRevision = async (rev) => {
    const d = await get(`/v1/taskdefinitions/${enc(`${family}:${rev}`)}`);
    shown = d.taskDefinition;
    const actions = [];
    if (ctx.canWrite && shown.status === 'ACTIVE') {
      const run = h('a.btn.btn-small', { href: `${ctx.base}/services?create=1&family=${enc(family)}` }, 'Create service');
      const dereg = h('button.btn.btn-small.btn-danger', { type: 'button', dataset: { action: 'deregister' } }, 'Deregister');
      dereg.addEventListener('click', async () => {
        const ok = await confirmAction({
          title: `Deregister ${family}:${rev}?`, text: 'The revision becomes INACTIVE: running tasks keep running, nothing new starts from it.',
          confirmLabel: 'Deregister', run: () => api('DELETE', `/v1/taskdefinitions/${enc(`${family}:${rev}`)}`),
        });
        if (ok) { toast(`${family}:${rev} deregistered`); load(); }
      });
      actions.push(run, dereg);
    }
    json.replaceChildren(section(`${family}:${rev}`,
      h('div.card-actions', pill(shown.status), ...actions),
      h('pre.code', { tabindex: '0', dataset: { test: 'taskdef-json' } }, JSON.stringify(shown, null, 2))));
  };

  const load = refresher(async () => {
    const d = await get(q('/v1/taskdefinitions', { familyPrefix: family, status: 'ALL' }));
    const list = (d.taskDefinitions || []).filter((t) => t.family === family).sort((a, b) => b.revision - a.revision).slice(0, 100);
    if (!selected && list.length) selected = (list.find((t) => t.status === 'ACTIVE') || list[0]).revision;
    revs.replaceChildren(table([
      { label: 'Revision', cell: (t) => { const a = h('a', { href: `${ctx.base}/taskdefs/${enc(family)}?rev=${t.revision}` }, `${family}:${t.revision}`); if (t.revision === selected) a.setAttribute('aria-current', 'true'); return a; } },
      { label: 'Status', cell: (t) => pill(t.status) },
      { label: 'CPU / mem', cell: (t) => `${t.cpu ?? '—'} / ${t.memory ?? '—'}` },
      { label: 'Registered', cell: (t) => timeEl(t.registeredAt) },
    ], list, (t) => String(t.revision), empty('No revisions')));
    if (selected) await showRevision(selected);
    v.loaded();
  }, err);
  load();
  return { el: v.el, title: family, kinds: ['taskdefinitions'], refresh: load, unmount: load.stop };
}
