// The login screen: a token secret in, a session cookie out.
import { h, field, showError } from '../dom.js';
import { login } from '../api.js';

export function loginView({ message, onLogin }) {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false', placeholder: 'B10…::berth_…' });
  const err = h('p.field-error', { role: 'alert', hidden: true });
  const submit = h('button.btn.btn-primary.btn-block', { type: 'submit' }, 'Sign in');
  const form = h('form.login-form', { dataset: { view: 'login', loaded: 'true' } },
    h('div.login-brand', h('img', { src: new URL('../../favicon.svg', import.meta.url).pathname, alt: '', width: '40', height: '40' }), h('h1', 'Berth')),
    h('p.muted', 'Containers and images, on your own machines.'),
    message ? h('p.alert.alert-info', { role: 'status' }, message) : null,
    field('API token', input, 'An admin, deploy or read-only token (berth prints the admin token at first start).'),
    err, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    showError(err, null);
    try {
      await login(input.value.trim());
      input.value = '';
      await onLogin();
    } catch (e2) {
      showError(err, e2);
      submit.disabled = false;
      input.focus();
    }
  });
  setTimeout(() => input.focus(), 0);
  return form;
}
