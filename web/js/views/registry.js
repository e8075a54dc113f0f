// The registry: repositories, a repository's images (tags, size, push time,
// delete), its lifecycle policy (edit, preview, delete) and the push command.
import { h, pill, timeEl, toast, confirmAction, empty, field, showError, fmtBytes, fmtNum, copyButton, icon, modal } from '../dom.js';
import { get, api, q, enc } from '../api.js';
import { viewShell, refresher, section } from '../view.js';
import { table } from '../table.js';

function pushCommand(repo, tag = 'latest') {
  return `docker push ${location.host}/${repo}:${tag}`;
}

function createRepoDialog(ctx, done) {
  const name = h('input', { name: 'repositoryName', required: true, autocomplete: 'off', placeholder: 'team/app' });
  const mut = h('select', { name: 'imageTagMutability' }, h('option', { value: 'MUTABLE' }, 'mutable'), h('option', { value: 'IMMUTABLE' }, 'immutable'));
  const err = h('p.field-error', { role: 'alert', hidden: true });
  const submit = h('button.btn.btn-primary', { type: 'submit' }, 'Create repository');
  const form = h('form.dialog-form', field('Name', name), field('Tags', mut), err, h('div.dialog-actions', submit));
  const m = modal('Create a repository', form);
  name.focus();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      const r = await api('POST', '/v1/repositories', { repositoryName: name.value.trim(), imageTagMutability: mut.value });
      toast(`Repository ${r.repository.repositoryName} created`);
      m.close();
      done(r.repository);
    } catch (e2) { showError(err, e2); submit.disabled = false; }
  });
}

export function registryView(ctx) {
  const v = viewShell('registry', 'Registry', `Images pushed to ${location.host}`);
  const err = h('div');
  const slot = h('div');
  v.body.append(err, slot);
  if (ctx.canWrite) {
    const b = h('button.btn.btn-primary', { type: 'button', dataset: { action: 'create-repository' } }, icon('plus'), h('span', 'Create repository'));
    b.addEventListener('click', () => createRepoDialog(ctx, (r) => ctx.navigate(`${ctx.base}/registry/${r.repositoryName.split('/').map(enc).join('/')}`)));
    v.actions.append(b);
  }
  const load = refresher(async () => {
    const d = await get('/v1/repositories');
    const repos = (d.repositories || []).slice(0, 100);
    slot.replaceChildren(table([
      { label: 'Repository', cell: (r) => h('a', { href: `${ctx.base}/registry/${r.repositoryName.split('/').map(enc).join('/')}` }, r.repositoryName) },
      { label: 'Images', cls: 'num', cell: (r) => fmtNum(r.imageCount) },
      { label: 'Tags', cell: (r) => (r.imageTagMutability || '').toLowerCase() },
      { label: 'Lifecycle policy', cell: (r) => (r.hasLifecyclePolicy ? pill('yes', 'ok') : h('span.muted', 'none')) },
      { label: 'Pull', cell: (r) => (r.anonymousPull ? pill('anonymous', 'warn') : 'token') },
      { label: 'Created', cell: (r) => timeEl(r.createdAt) },
    ], repos, (r) => r.repositoryName,
    empty('No repositories yet', 'Push an image and its repository appears:',
      h('div.copy-line', h('code', pushCommand('app', '1')), copyButton(() => pushCommand('app', '1'))))));
    v.loaded();
  }, err);
  load();
  return { el: v.el, title: 'Registry', kinds: ['repositories'], refresh: load, unmount: load.stop };
}

export function repositoryView(ctx) {
  const name = ctx.id;
  const v = viewShell('repository', name, 'Repository', [h('a', { href: `${ctx.base}/registry` }, 'Registry'), ' / ', name]);
  const err = h('div');
  const images = h('div');
  const policy = h('div');
  const cmd = pushCommand(name);
  v.body.append(err,
    section('Push', h('div.copy-line', h('code', { dataset: { test: 'push-command' } }, cmd), copyButton(() => cmd)),
      h('p.hint', `Log in first: docker login ${location.host} (user AWS or any name, a token as the password).`)),
    section('Images', images), policy);
  const path = `/v1/repositories/${enc(name)}`;

  // The lifecycle policy editor, built once (so typing is never lost to a refresh).
  const editor = h('textarea.code-editor', { name: 'lifecyclePolicy', rows: '10', spellcheck: 'false', readonly: !ctx.canWrite });
  const perr = h('p.field-error', { role: 'alert', hidden: true });
  const preview = h('div');
  const previewBtn = h('button.btn', { type: 'button', dataset: { action: 'preview-policy' } }, 'Preview');
  const buttons = [previewBtn];
  let hasPolicy = false;
  const delPolicy = h('button.btn.btn-danger', { type: 'button', dataset: { action: 'delete-policy' } }, 'Delete policy');
  if (ctx.canWrite) {
    const save = h('button.btn.btn-primary', { type: 'button', dataset: { action: 'save-policy' } }, 'Save policy');
    save.addEventListener('click', async () => {
      showError(perr, null);
      try { await api('PUT', `${path}/policy`, editor.value); toast('Lifecycle policy saved'); hasPolicy = true; delPolicy.hidden = false; } catch (e) { showError(perr, e); }
    });
    delPolicy.addEventListener('click', async () => {
      const ok = await confirmAction({ title: 'Delete the lifecycle policy?', text: 'Images are no longer expired by it.', run: () => api('DELETE', `${path}/policy`) });
      if (ok) { toast('Lifecycle policy deleted'); editor.value = ''; hasPolicy = false; delPolicy.hidden = true; }
    });
    buttons.unshift(save);
    buttons.push(delPolicy);
  }
  previewBtn.addEventListener('click', async () => {
    showError(perr, null);
    try {
      const r = editor.value.trim() && ctx.canWrite
        ? await api('POST', `${path}/policy/preview`, editor.value)
        : await get(`${path}/policy/preview`);
      const res = r.previewResults || [];
      preview.replaceChildren(h('h3.sub-title', `Preview: ${res.length} image${res.length === 1 ? '' : 's'} would expire`),
        table([
          { label: 'Digest', cell: (i) => h('span.mono', (i.imageDigest || '').slice(7, 19)) },
          { label: 'Tags', cell: (i) => (i.imageTags || []).join(', ') || h('span.muted', 'untagged') },
          { label: 'Pushed', cell: (i) => timeEl(i.imagePushedAt) },
          { label: 'Rule', cls: 'num', cell: (i) => String(i.appliedRulePriority ?? '—') },
        ], res, (i) => i.imageDigest, empty('Nothing would expire')));
    } catch (e) { showError(perr, e); }
  });
  policy.append(section('Lifecycle policy', field('Policy JSON (ECR lifecycle policy)', editor), perr, h('div.card-actions', buttons), preview));

  const loadPolicy = async () => {
    try {
      // Ask for the policy only when there is one (no 404 to show for nothing).
      const r = await get(path);
      if (!r.repository.hasLifecyclePolicy) throw Object.assign(new Error('none'), { status: 404 });
      const p = await get(`${path}/policy`);
      let text = p.lifecyclePolicyText || '';
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* keep as is */ }
      editor.value = text;
      hasPolicy = true;
    } catch (e) {
      if (e.code !== 'LifecyclePolicyNotFoundException' && e.status !== 404) throw e;
      hasPolicy = false;
      editor.placeholder = '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":10},"action":{"type":"expire"}}]}';
    }
    delPolicy.hidden = !hasPolicy;
  };

  const load = refresher(async () => {
    const d = await get(q(`${path}/images`, { tagStatus: 'ANY' }));
    const list = (d.imageDetails || []).slice(0, 100);
    images.replaceChildren(table([
      { label: 'Tags', cell: (i) => ((i.imageTags || []).length ? h('span.tags', i.imageTags.map((t) => h('span.tag', t))) : h('span.muted', 'untagged')) },
      { label: 'Digest', cell: (i) => h('span.mono', { title: i.imageDigest }, (i.imageDigest || '').slice(7, 19)) },
      { label: 'Size', cls: 'num', cell: (i) => fmtBytes(i.imageSizeInBytes) },
      { label: 'Pushed', cell: (i) => timeEl(i.imagePushedAt) },
      ...(ctx.canWrite ? [{ label: 'Actions', cell: (i) => {
        const b = h('button.btn.btn-small.btn-danger', { type: 'button', dataset: { action: 'delete-image' } }, 'Delete');
        b.addEventListener('click', async () => {
          const ok = await confirmAction({
            title: 'Delete this image?',
            text: `${name}@${(i.imageDigest || '').slice(0, 19)}… and its tags (${(i.imageTags || []).join(', ') || 'none'}) are removed.`,
            run: () => api('DELETE', `${path}/images/${enc(i.imageDigest)}`),
          });
          if (ok) { toast('Image deleted'); load(); }
        });
        return b;
      } }] : []),
    ], list, (i) => i.imageDigest, empty('No images', 'Push one with the command above.')));
    v.loaded();
  }, err);
  loadPolicy().catch((e) => showError(perr, e));
  load();
  return { el: v.el, title: name, kinds: ['repositories'], refresh: load, unmount: load.stop };
}
