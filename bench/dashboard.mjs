// The dashboard measured in headless Chromium (bench/dashboard.sh starts the
// server and its simulated nodes, then runs this). Prints one JSON object:
//   first_render_ms   navigation to the overview showing its numbers, cold cache
//                     (median of RUNS fresh browser contexts, each signed in
//                     through the login form first: a user coming back)
//   transfer_kib      compressed bytes (headers included) of one cold load,
//                     the event stream left out (it never ends)
//   sse_lag_ms        a task's state change, seen by a client polling the API
//                     every 20 ms, to the open overview showing it (median)
//   server_cpu_*      the server's CPU with VIEWERS dashboards open and idle,
//                     against the same span with none
// Environment: BERTH_URL, BERTH_TOKEN, BERTH_CA, BERTH_PID, RUNS, VIEWERS,
// IDLE_SECONDS, PROBE_FAMILY, and STATIC_URL (the same files from nginx: the
// floor a static server sets for the first render).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import https from 'node:https';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const url = process.env.BERTH_URL;
const token = process.env.BERTH_TOKEN;
const ca = readFileSync(process.env.BERTH_CA);
const serverPid = process.env.BERTH_PID;
const runs = Number(process.env.RUNS || 5);
const viewers = Number(process.env.VIEWERS || 50);
const idleSeconds = Number(process.env.IDLE_SECONDS || 30);
const probeFamily = process.env.PROBE_FAMILY || 'dashprobe';
const staticUrl = process.env.STATIC_URL || '';
const clkTck = Number(process.env.CLK_TCK || 100);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// The API, as the CLI would call it (a kept-alive agent, the cluster CA).
const agent = new https.Agent({ keepAlive: true, ca });
function api(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, url), {
      method, agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        if (res.statusCode >= 300) return reject(new Error(`${method} ${path}: ${res.statusCode} ${data}`));
        resolve(data ? JSON.parse(data) : {});
      });
    });
    req.on('error', reject);
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

function serverCpuSeconds() {
  const f = readFileSync(`/proc/${serverPid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clkTck;  // utime + stime
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});

// A logged-in context. The session cookie comes from the server's login route,
// as the login form would get it; with `throughForm` the login form itself is
// used (in a page closed right after), which also leaves what the app keeps in
// the browser for its next load: the state of a user coming back.
async function freshContext({ throughForm = false } = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  if (throughForm) {
    const page = await context.newPage();
    await page.goto(`${url}/ui/`);
    await page.fill('input[name="token"]', token);
    await page.click('button[type="submit"]');
    await page.waitForSelector('[data-view="overview"][data-loaded="true"]', { timeout: 60000 });
    await page.close();
    return context;
  }
  const r = await context.request.post(`${url}/v1/session`, { data: { token } });
  if (r.status() !== 201) throw new Error(`login: ${r.status()} ${await r.text()}`);
  return context;
}

const overviewReady = '[data-view="overview"][data-loaded="true"]';

async function coldLoad(base, waitFor) {
  const context = await freshContext({ throughForm: true });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  const streams = new Set();
  cdp.on('Network.responseReceived', (e) => {
    if ((e.response.mimeType || '').includes('event-stream')) streams.add(e.requestId);
  });
  cdp.on('Network.loadingFinished', (e) => { if (!streams.has(e.requestId)) bytes += e.encodedDataLength; });
  await page.goto(`${base}/ui/`, { waitUntil: 'commit' });
  // performance.now() counts from the navigation's start: the time the user waits.
  const ms = await page.waitForFunction(
    (sel) => (document.querySelector(sel) ? performance.now() : null), waitFor, { polling: 'raf', timeout: 60000 });
  const renderMs = await ms.jsonValue();
  if (process.env.TIMELINE) {
    // Where the wait went: each request's start and end, from the navigation's start.
    const rows = await page.evaluate(() => performance.getEntriesByType('navigation').concat(
      performance.getEntriesByType('resource'), performance.getEntriesByType('mark')).map((e) =>
      [Math.round(e.startTime), Math.round(e.responseEnd), e.name.replace(location.origin, '')]));
    for (const [start, end, name] of rows) console.error(`timeline ${String(start).padStart(5)} ${String(end).padStart(5)} ${name}`);
    console.error(`timeline render ${Math.round(renderMs)}`);
  }
  await page.waitForLoadState('networkidle').catch(() => {});
  await context.close();
  return { renderMs, bytes };
}

const out = {};
const loads = [];
for (let i = 0; i < runs; i++) loads.push(await coldLoad(url, overviewReady));
out.first_render_ms = Math.round(median(loads.map((l) => l.renderMs)));
out.first_render_max_ms = Math.round(Math.max(...loads.map((l) => l.renderMs)));
out.transfer_kib = Math.round(median(loads.map((l) => l.bytes)) / 1024 * 10) / 10;

if (staticUrl) {
  // The same files from nginx, its page showing a snapshot of the overview's
  // numbers: what the browser and the network alone cost.
  const statics = [];
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${staticUrl}/ui/`, { waitUntil: 'commit' });
    const h = await page.waitForFunction(() => (document.readyState === 'complete' ? performance.now() : null),
      null, { polling: 'raf', timeout: 60000 });
    statics.push(await h.jsonValue());
    await context.close();
  }
  out.static_load_ms = Math.round(median(statics));
}

// Live updates: an open overview, a task started and stopped from the API.
{
  const context = await freshContext();
  const page = await context.newPage();
  page.on('console', (m) => console.error(`page: ${m.type()}: ${m.text()}`));
  page.on('requestfailed', (r) => console.error(`page: request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${url}/ui/`);
  await page.waitForSelector(overviewReady, { timeout: 60000 });
  const shown = () => page.evaluate(() => {
    const el = document.querySelector('[data-stat="tasks-running"]');
    if (!el) return null;
    const v = el.getAttribute('data-value') ?? el.textContent.replace(/[^0-9]/g, '');
    return v === '' ? null : Number(v);
  });
  const apiRunning = async () => (await api('GET', '/v1/overview?cluster=default')).tasks.running;
  const lags = [];
  for (let i = 0; i < runs; i++) {
    const before = await apiRunning();
    await page.waitForFunction((n) => {
      const el = document.querySelector('[data-stat="tasks-running"]');
      const v = el && (el.getAttribute('data-value') ?? el.textContent.replace(/[^0-9]/g, ''));
      return Number(v) === n;
    }, before, { timeout: 30000 });
    const run = await api('POST', '/v1/tasks', { cluster: 'default', taskDefinition: probeFamily, count: 1 });
    const id = run.tasks[0].taskArn.split('/').pop();
    let tApi = 0;
    const polling = (async () => {
      for (;;) {
        if ((await apiRunning()) > before) { tApi = Date.now(); return; }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await page.waitForFunction((n) => {
      const el = document.querySelector('[data-stat="tasks-running"]');
      const v = el && (el.getAttribute('data-value') ?? el.textContent.replace(/[^0-9]/g, ''));
      return Number(v) > n;
    }, before, { polling: 'raf', timeout: 30000 }).catch(async (e) => {
      throw new Error(`the overview never showed more than ${before} tasks running (it shows ${await shown()}, ` +
        `the API ${await apiRunning()}, task ${id}: ${JSON.stringify((await api('GET', `/v1/tasks/${id}`)).task.lastStatus)}): ${e.message}`);
    });
    const tUi = Date.now();
    await polling;
    lags.push(Math.max(0, tUi - tApi));
    await api('POST', `/v1/tasks/${id}/stop`, { reason: 'bench' });
    // The next round starts from the count without this task.
    for (let waited = 0; (await apiRunning()) > before; waited += 50) {
      if (waited > 60000) throw new Error(`task ${id} did not stop within a minute`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  out.sse_lag_ms = Math.round(median(lags));
  out.sse_lag_max_ms = Math.max(...lags);
  out.shown_running = await shown();
  await context.close();
}

// What idle open dashboards cost the server.
{
  const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
  const c0 = serverCpuSeconds();
  await sleep(idleSeconds);
  const idle = serverCpuSeconds() - c0;
  const context = await freshContext();
  const pages = [];
  for (let i = 0; i < viewers; i++) {
    const page = await context.newPage();
    await page.goto(`${url}/ui/`);
    await page.waitForSelector(overviewReady, { timeout: 120000 });
    pages.push(page);
  }
  await sleep(3);  // the last loads' work done
  const c1 = serverCpuSeconds();
  await sleep(idleSeconds);
  const open = serverCpuSeconds() - c1;
  const extraPct = Math.max(0, (open - idle) / idleSeconds * 100);
  out.server_cpu_idle_pct = Math.round(idle / idleSeconds * 1000) / 10;
  out.server_cpu_viewers_pct = Math.round(extraPct * 100) / 100;
  out.server_cpu_per_viewer = Math.round(extraPct / viewers * 1000) / 1000;  // percent of one core
  out.viewers = viewers;
  await context.close();
}

await browser.close();
console.log(JSON.stringify(out));
