// The dashboard end to end in headless Chromium (Debian's chromium through
// playwright-core): a real berth server with simulated nodes, driven the way a
// person would, with every console error, failed request, unexpected error
// answer and request to another host failing the test.
//
// BERTH_BINARY: the berth to test; BERTH_TEST_OUT: where screenshots go.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer, startAgent, api, request, guard, waitFor, outDir, stop, killAll, WAIT } from './harness.mjs';

const BINARY = process.env.BERTH_BINARY;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const NODES = 3;
const OUT = outDir();
// Controls only a role that may change things should see.
const CHANGE_CONTROLS = '[data-action]:not([data-action=logout]):not([data-action=follow]):not([data-action=pause])'
  + ':not([data-action=download]):not([data-action=preview-policy]), form[data-form], [data-action=create-service]';

let server;
let browser;
let page;
let watchdog;
const missing = {};

const TASKDEF = {
  family: 'web',
  containerDefinitions: [{ name: 'web', image: 'nginx:1.25', cpu: 128, memory: 64, essential: true, portMappings: [{ containerPort: 80 }] }],
};

function skipIfMissing(t, ...pieces) {
  const gone = pieces.filter((p) => missing[p]);
  if (gone.length) {
    t.skip(`missing server piece: ${gone.map((p) => missing[p]).join('; ')}`);
    return true;
  }
  return false;
}

async function loaded(view) {
  await page.waitForSelector(`[data-view="${view}"][data-loaded="true"]`, { timeout: WAIT });
}

async function nav(label, view) {
  if (await page.locator('.menu-btn').isVisible()) await page.click('.menu-btn');
  await page.click(`nav a.nav-link:has-text("${label}")`);
  await loaded(view);
}

async function login(token) {
  await page.waitForSelector('[data-view=login] input[name=token]', { timeout: WAIT });
  await page.fill('[data-view=login] input[name=token]', token);
  await page.click('[data-view=login] button[type=submit]');
  // The app stays on the page it was on (the overview after a fresh start).
  if (missing.overview) await page.waitForSelector('.shell [data-view]', { timeout: WAIT });
  else await page.waitForSelector('.shell [data-view][data-loaded="true"]', { timeout: WAIT });
}

async function logout() {
  await page.click('[data-action=logout]');
  await page.waitForSelector('[data-view=login]', { timeout: WAIT });
}

/** Marks the document; noReload() then proves no navigation happened since. */
async function mark() { await page.evaluate(() => { window.__berthMark = 'still here'; }); }
async function noReload() {
  assert.equal(await page.evaluate(() => window.__berthMark), 'still here', 'the page was reloaded');
}

async function text(sel) { return (await page.locator(sel).first().textContent()).trim(); }

async function shoot(name) {
  const vp = page.viewportSize();
  await page.screenshot({ path: path.join(OUT, `${name}-${vp.width}x${vp.height}.png`), fullPage: true });
}

describe('dashboard', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    assert.ok(BINARY, 'BERTH_BINARY must name the berth binary');
    server = await startServer(BINARY);
    server.binary = BINARY;
    // The pieces the dashboard needs from the server; a missing one skips the
    // steps that need it, by name (never a silent pass).
    const ui = await request(server, 'GET', '/ui/', undefined, null);
    if (ui.status !== 200 || !/text\/html/.test(ui.headers['content-type'] || '')) missing.ui = `GET /ui/ answers ${ui.status} (the embedded dashboard)`;
    else if (ui.body.includes('__ASSETS__')) missing.ui = 'GET /ui/ still holds __ASSETS__';
    const s = await request(server, 'POST', '/v1/session', { token: server.token }, null);
    if (s.status !== 201) missing.session = `POST /v1/session answers ${s.status} (sessions)`;
    const o = await request(server, 'GET', '/v1/overview?cluster=default');
    if (o.status !== 200) missing.overview = `GET /v1/overview answers ${o.status}`;
    await startAgent(server, NODES);
    await waitFor(`${NODES} simulated nodes`, async () => (await api(server, 'GET', '/v1/nodes')).containerInstances.length === NODES);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true, acceptDownloads: true });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    watchdog = guard(page, server);
    if (missing.overview) watchdog.expect('GET', '/v1/overview', 404, { repeat: true });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) {
      await stop(server.proc);
      killAll();
      if (!process.env.BERTH_KEEP) fs.rmSync(server.dataDir, { recursive: true, force: true });
    }
  });

  it('serves the dashboard and logs in with the admin token', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    watchdog.expect('GET', '/v1/session', 401); // no session yet
    await page.goto(server.url + '/');
    assert.match(new URL(page.url()).pathname, /^\/ui\/?$/);
    await shoot('login');
    // A wrong token is refused with the server's message next to the form.
    watchdog.expect('POST', '/v1/session', 401);
    await page.fill('[data-view=login] input[name=token]', 'not-a-token');
    await page.click('[data-view=login] button[type=submit]');
    await page.waitForSelector('[data-view=login] .field-error:not([hidden])');
    await login(server.token);
    if (!missing.overview) await loaded('overview');
    await mark();
    watchdog.check();
  });

  it('shows the node count on the overview', async (t) => {
    if (skipIfMissing(t, 'ui', 'session', 'overview')) return;
    await waitFor('the node count', async () => (await text('[data-stat=nodes-total]')) === String(NODES));
    assert.equal(await text('[data-stat=nodes-active]'), String(NODES));
    watchdog.check();
  });

  it('registers a task definition, errors shown by field', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    await nav('Task definitions', 'taskdefs');
    await page.click('[data-action=register-taskdef]');
    const bad = structuredClone(TASKDEF);
    bad.containerDefinitions[0].portMappings[0].containerPort = 70000;
    watchdog.expect('POST', '/v1/taskdefinitions', 400);
    await page.fill('dialog textarea[name=taskDefinition]', JSON.stringify(bad, null, 2));
    await page.click('dialog button[type=submit]');
    const err = page.locator('dialog .field-error:not([hidden])');
    await err.waitFor();
    assert.match(await err.textContent(), /containerDefinitions\[0\]\.portMappings\[0\]\.containerPort/);
    // The editor selects the value the error names.
    const selected = await page.evaluate(() => { const e = document.querySelector('dialog textarea'); return e.value.slice(e.selectionStart, e.selectionEnd); });
    assert.match(selected, /^"containerPort": 70000$/);
    await page.fill('dialog textarea[name=taskDefinition]', JSON.stringify(TASKDEF, null, 2));
    await page.click('dialog button[type=submit]');
    await loaded('taskdef');
    assert.match(await text('[data-test=taskdef-json]'), /"family": "web"/);
    await noReload();
    watchdog.check();
  });

  it('creates a service and watches its tasks reach RUNNING without reloading', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    await page.click('a:has-text("Create service")');
    await page.fill('dialog input[name=serviceName]', 'web');
    await page.fill('dialog input[name=desiredCount]', '3');
    await page.click('dialog button[type=submit]');
    await loaded('service');
    await waitFor('3 running tasks shown', async () => (await text('[data-stat=running]')) === '3'
      && (await page.locator('[data-view=service] tr[data-id] .pill-ok:has-text("running")').count()) >= 3);
    await noReload();
    watchdog.check();
  });

  it('scales the service', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    await page.fill('form[data-form=scale] input[name=desiredCount]', '5');
    await page.click('[data-action=scale]');
    await waitFor('5 running tasks shown', async () => (await text('[data-stat=running]')) === '5'
      && (await text('[data-stat=desired]')) === '5');
    await noReload();
    watchdog.check();
  });

  it('drains a node and sees its tasks move', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    const tasks = (await api(server, 'GET', '/v1/tasks?service=web&desiredStatus=RUNNING')).tasks;
    const node = tasks[0].nodeId;
    await nav('Nodes', 'nodes');
    await page.click(`tr[data-id="${node}"] [data-action=drain]`);
    await page.click('dialog [data-action=confirm]');
    await page.waitForSelector(`tr[data-id="${node}"] .pill:has-text("draining")`);
    await page.click(`tr[data-id="${node}"] a`);
    await loaded('node');
    await waitFor('no running task left on the drained node',
      async () => (await page.locator('[data-view=node] tbody tr[data-id]').count()) === 0
        && (await page.locator('[data-view=node] .empty').count()) > 0);
    const after = (await api(server, 'GET', '/v1/tasks?service=web&desiredStatus=RUNNING')).tasks;
    assert.ok(after.every((x) => x.nodeId !== node), 'a task stayed on the drained node');
    await page.click('[data-action=activate]');
    await page.waitForSelector('[data-view=node] [data-action=drain]');
    await noReload();
    watchdog.check();
  });

  it("opens a task's live log tail", async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    const task = (await api(server, 'GET', '/v1/tasks?service=web&desiredStatus=RUNNING')).tasks[0];
    const probe = await request(server, 'GET', `/v1/tasks/${task.taskId}/logs?tail=5`, undefined, server.token, { timeout: 20_000 })
      .catch((e) => ({ status: 0, body: e.message }));
    if (probe.status !== 200) {
      t.skip(`missing server piece: synthetic logs on the simulated agent (GET /v1/tasks/{id}/logs answers ${probe.status} ${probe.body.slice(0, 120)})`);
      return;
    }
    await nav('Tasks', 'tasks');
    await page.click(`tr[data-id="${task.taskId}"] a.mono`);
    await loaded('task');
    await page.click('[data-action=follow]');
    await waitFor('log lines', async () => ((await page.locator('[data-test=log]').textContent()) || '').trim().length > 0);
    await page.click('[data-action=pause]');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-action=download]')]);
    const saved = path.join(OUT, 'task.log');
    await download.saveAs(saved);
    assert.ok(fs.statSync(saved).size > 0, 'the downloaded log is empty');
    await page.click('[data-action=stop]');
    await noReload();
    watchdog.check();
  });

  it('looks right at 1280x800 and 390x844 (screenshots)', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    await api(server, 'POST', '/v1/repositories', { repositoryName: 'team/app' });
    const task = (await api(server, 'GET', '/v1/tasks?service=web&desiredStatus=RUNNING')).tasks[0];
    const node = task.nodeId;
    const views = [
      ['overview', '', 'overview'], ['nodes', 'nodes', 'nodes'], ['node', `nodes/${node}`, 'node'],
      ['services', 'services', 'services'], ['service', 'services/web', 'service'], ['tasks', 'tasks', 'tasks'],
      ['task', `tasks/${task.taskId}`, 'task'], ['taskdefs', 'taskdefs', 'taskdefs'], ['taskdef', 'taskdefs/web', 'taskdef'],
      ['registry', 'registry', 'registry'], ['repository', 'registry/team/app', 'repository'],
    ];
    for (const [w, hgt] of [[1280, 800], [390, 844]]) {
      await page.setViewportSize({ width: w, height: hgt });
      for (const [name, p, view] of views) {
        if (missing.overview && view === 'overview') continue;
        await page.goto(`${server.url}/ui/${p}`);
        await loaded(view);
        await shoot(name);
      }
      if (w === 390) {
        assert.ok(!(await page.locator('#sidebar').isVisible()), 'the navigation is not collapsed at 390 px');
        await page.click('.menu-btn');
        await page.waitForSelector('#sidebar a.nav-link:visible');
        await shoot('navigation');
        await page.keyboard.press('Escape');
        await page.waitForSelector('#sidebar', { state: 'hidden' });
      }
    }
    await page.setViewportSize({ width: 1280, height: 800 });
    watchdog.check();
  });

  it('shows a read-only session no change controls, and the server refuses a forged change', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    const ro = (await api(server, 'POST', '/v1/tokens', { role: 'read-only' })).token.secret;
    await page.goto(`${server.url}/ui/nodes`);
    await loaded('nodes');
    await logout();
    await login(ro);
    const task = (await api(server, 'GET', '/v1/tasks?service=web&desiredStatus=RUNNING')).tasks[0];
    for (const [p, view] of [['', 'overview'], ['nodes', 'nodes'], [`nodes/${task.nodeId}`, 'node'], ['services', 'services'],
      ['services/web', 'service'], ['tasks', 'tasks'], [`tasks/${task.taskId}`, 'task'], ['taskdefs', 'taskdefs'],
      ['taskdefs/web', 'taskdef'], ['registry', 'registry'], ['registry/team/app', 'repository']]) {
      if (missing.overview && view === 'overview') continue;
      await page.goto(`${server.url}/ui/${p}`);
      await loaded(view);
      const shown = await page.locator(CHANGE_CONTROLS).evaluateAll((els) => els.map((e) => e.dataset.action || e.dataset.form || e.outerHTML.slice(0, 60)));
      assert.deepEqual(shown, [], `change controls shown to read-only on /ui/${p}`);
    }
    watchdog.expect('POST', `/v1/nodes/${task.nodeId}/drain`, 403);
    const status = await page.evaluate(async (node) => {
      const r = await fetch(`/v1/nodes/${node}/drain`, { method: 'POST', headers: { 'X-CSRF-Token': sessionStorage.getItem('berth.csrf') || '' } });
      return r.status;
    }, task.nodeId);
    assert.equal(status, 403);
    await logout();
    watchdog.check();
  });

  it('deletes the service after confirmation', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    await login(server.token);
    await mark();
    await nav('Services', 'services');
    await page.click('tr[data-id="web"] a');
    await loaded('service');
    await page.click('[data-action=delete-service]');
    // Escape closes the dialog and nothing happens.
    await page.waitForSelector('dialog[open]');
    await page.keyboard.press('Escape');
    await page.waitForSelector('dialog', { state: 'detached' });
    assert.ok((await api(server, 'GET', '/v1/services/web?cluster=default')).service);
    await page.click('[data-action=delete-service]');
    await page.click('dialog [data-action=confirm]');
    await loaded('services');
    await waitFor('the service gone from the list', async () => (await page.locator('tr[data-id="web"]').count()) === 0, 120_000)
      .catch(async (e) => {
        // Say whether the server or the page is behind: the service as the API
        // has it (gone is a 404), and whether the page's stream is up.
        const state = await api(server, 'GET', '/v1/services/web?cluster=default')
          .then((d) => JSON.stringify({ status: d.service.status, running: d.service.runningCount, pending: d.service.pendingCount }))
          .catch((e2) => e2.message);
        const live = await page.locator('.live').first().getAttribute('class').catch(() => '?');
        throw new Error(`${e.message}; the API says: ${state}; the page's stream: ${live}`);
      });
    await noReload();
    watchdog.check();
  });

  it('logs out', async (t) => {
    if (skipIfMissing(t, 'ui', 'session')) return;
    await logout();
    watchdog.expect('GET', '/v1/session', 401);
    assert.equal(await page.evaluate(async () => (await fetch('/v1/session')).status), 401);
    watchdog.check();
  });
});
