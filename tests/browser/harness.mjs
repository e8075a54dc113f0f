// What the browser tests run against: a real `berth server` (temp data dir, TLS
// with its own CA) and `berth agent --simulate N`, plus an API client for the
// test's own setup requests and a page guard that fails the test on console
// errors, failed requests, unexpected error statuses and foreign hosts.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';

export const WAIT = 60_000;

export function outDir() {
  const dir = process.env.BERTH_TEST_OUT || path.join(path.dirname(new URL(import.meta.url).pathname), 'out');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

const children = [];
/** Ends every process the tests started (agents first, then anything left). */
export function killAll() {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
}
process.on('exit', killAll);

export async function waitFor(what, fn, timeout = WAIT, step = 250) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((r) => setTimeout(r, step));
  }
}

/** Starts `berth server` on 127.0.0.1:0 and resolves {url, host, token, ca, dataDir, proc, log}. */
export async function startServer(binary) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-browser-'));
  const logPath = path.join(dataDir, 'server.log');
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(binary, ['server', '--data', path.join(dataDir, 'data'), '--listen', '127.0.0.1:0', '--no-agent'],
    { stdio: ['ignore', 'pipe', log] });
  children.push(proc);
  let out = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not listen:\n' + out)), WAIT);
    proc.stdout.on('data', (d) => {
      out += d;
      fs.appendFileSync(logPath, d);
      const m = /listening on .*bound to [^\s)]*:(\d+)\)/.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => reject(new Error(`the server exited (${code}):\n${out}\n${fs.readFileSync(logPath, 'utf8').slice(-2000)}`)));
  });
  const token = fs.readFileSync(path.join(dataDir, 'data', 'admin-token'), 'utf8').trim();
  const ca = fs.readFileSync(path.join(dataDir, 'data', 'ca.crt'));
  const host = `127.0.0.1:${port}`;
  const server = { url: `https://${host}`, host, token, ca, dataDir, proc, logPath };
  await waitFor('/healthz', async () => (await request(server, 'GET', '/healthz', undefined, null)).status === 200);
  return server;
}

export function stop(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
    setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 10_000).unref();
  });
}

/** One HTTPS request trusting the server's CA; resolves {status, body, json}. */
export function request(server, method, p, body, token = server.token, { timeout = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (data) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = data.length; }
    const u = new URL(p, server.url);
    const req = https.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers, ca: server.ca, servername: 'localhost', checkServerIdentity: () => undefined, timeout }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { json = null; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timed out`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

export async function api(server, method, p, body, token) {
  const r = await request(server, method, p, body, token);
  if (r.status >= 400) throw new Error(`${method} ${p}: ${r.status} ${r.body.slice(0, 300)}`);
  return r.json;
}

/** `berth agent --simulate n` with a fresh agent token. */
export async function startAgent(server, n, prefix = 'sim') {
  const t = await api(server, 'POST', '/v1/tokens', { role: 'agent' });
  const logPath = path.join(server.dataDir, `agent-${prefix}.log`);
  const log = fs.openSync(logPath, 'a');
  const proc = spawn(server.binary || process.env.BERTH_BINARY, ['agent', '--simulate', String(n), '--server', server.url,
    '--token', t.token.secret, '--id-prefix', prefix, '--start-delay-ms', '50'], { stdio: ['ignore', log, log] });
  proc.unref();
  children.push(proc);
  return { proc, logPath };
}

/** Watches a page: everything that should fail the test lands in `problems`.
 *  `expect(method, pathPrefix, status)` allows one provoked error answer. */
export function guard(page, server) {
  const problems = [];
  const allowed = [];
  const origin = new URL(server.url).origin;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The browser logs every answer >= 400 too; those are judged by their response.
    if (/^Failed to load resource: the server responded with a status of \d+/.test(m.text())) return;
    problems.push(`console error: ${m.text()} (${m.location().url || ''})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (u.origin !== origin) problems.push(`request to another host: ${r.method()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    const why = (r.failure() && r.failure().errorText) || '';
    const u = new URL(r.url());
    // A log stream or the change stream cut by the page itself (Stop, leaving the view, logout).
    if (why === 'net::ERR_ABORTED' && (/\/logs$/.test(u.pathname) || u.pathname === '/v1/stream')) return;
    if (u.protocol === 'blob:') return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const u = new URL(r.url());
    const method = r.request().method();
    const i = allowed.findIndex((a) => a.method === method && u.pathname.startsWith(a.path) && a.status === r.status());
    if (i >= 0) { allowed[i].seen = true; if (!allowed[i].repeat) allowed.splice(i, 1); return; }
    problems.push(`unexpected ${r.status()} for ${method} ${u.pathname}${u.search}`);
  });
  return {
    problems,
    expect(method, p, status, { repeat = false } = {}) { allowed.push({ method, path: p, status, repeat }); },
    unexpect(method, p) { for (let i = allowed.length - 1; i >= 0; i--) if (allowed[i].method === method && allowed[i].path === p) allowed.splice(i, 1); },
    check() {
      if (problems.length) throw new Error('the page misbehaved:\n  ' + problems.join('\n  '));
    },
  };
}
