// One change stream per cluster for every tab of the dashboard (a SharedWorker).
// A browser keeps at most six HTTP/1.1 connections to one server: with a stream
// per tab, a seventh tab would find none left to load with. Tabs say which
// cluster they watch ({type:'watch', cluster}) and stop ({type:'stop'}); the
// worker passes on {type:'change', data} and {type:'state', up, closed}.
const streams = new Map();  // cluster -> { es, ports: Set, up, retry }

function open(cluster, s) {
  s.es = new EventSource('/v1/stream?cluster=' + encodeURIComponent(cluster));
  s.es.addEventListener('open', () => { s.up = true; tell(s, { type: 'state', up: true, closed: false }); });
  s.es.addEventListener('change', (ev) => tell(s, { type: 'change', data: ev.data }));
  s.es.addEventListener('error', () => {
    s.up = false;
    const closed = s.es.readyState === EventSource.CLOSED;
    tell(s, { type: 'state', up: false, closed });
    // The browser gave up (an HTTP error, e.g. logged out): try again later.
    if (closed && !s.retry) s.retry = setTimeout(() => { s.retry = null; if (s.ports.size) open(cluster, s); }, 15000);
  });
}

function tell(s, msg) {
  for (const p of s.ports) p.postMessage(msg);
}

function join(cluster, port) {
  let s = streams.get(cluster);
  if (!s) {
    s = { es: null, ports: new Set(), up: false, retry: null };
    streams.set(cluster, s);
  }
  s.ports.add(port);
  if (!s.es || s.es.readyState === EventSource.CLOSED) {
    if (s.retry) { clearTimeout(s.retry); s.retry = null; }
    open(cluster, s);
  } else if (s.up) {
    port.postMessage({ type: 'state', up: true, closed: false });
  }
}

function leave(cluster, port) {
  const s = streams.get(cluster);
  if (!s) return;
  s.ports.delete(port);
  if (s.ports.size) return;
  if (s.es) s.es.close();
  if (s.retry) clearTimeout(s.retry);
  streams.delete(cluster);
}

self.addEventListener('connect', (e) => {
  const port = e.ports[0];
  let cluster = null;
  port.addEventListener('message', (m) => {
    if (cluster !== null) leave(cluster, port);
    cluster = m.data && m.data.type === 'watch' ? String(m.data.cluster) : null;
    if (cluster !== null) join(cluster, port);
  });
  port.start();
});
