// weir dashboard: polls the job API once a second and draws what it says.
// Vanilla JS, no dependencies. Every value from the server is set as text
// (never as HTML): job names and errors come from tenants.
'use strict';
(() => {
  const POLL_MS = 1000;
  const WORKERS_EVERY = 5; // polls between two looks at /workers
  const WINDOW_MS = 5 * 60 * 1000; // what the charts show
  const TERMINAL = new Set(['finished', 'stopped', 'cancelled', 'failed', 'ended']);
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  const S = {
    token: '',
    jobs: [],
    job: '',
    node: '',
    metrics: null, // the last JobMetrics of the selected job
    prev: null, // {job, t, nodes: {name: sums}} of the previous sample
    rates: {}, // name -> {rate, busy, bp, lag, subs: [{busy, bp}]}
    history: [], // [{t, nodes: {name: {rate, lag}}}], oldest first
    graphKey: '',
    workersOff: false,
    ticks: 0,
    busy: false, // a command is in flight
  };

  // ---- token: from the fragment into sessionStorage, out of the address bar

  function takeToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      let token = m[1];
      try { token = decodeURIComponent(token); } catch (_) { /* keep it raw */ }
      sessionStorage.setItem('weir-token', token);
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem('weir-token') || '';
  }

  // ---- HTTP

  class HttpError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  async function api(path, init) {
    const headers = { Authorization: 'Bearer ' + S.token };
    if (init && init.body) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, Object.assign({ headers, cache: 'no-store' }, init || {}));
    } catch (e) {
      throw new HttpError(0, 'cannot reach the server (' + e.message + ')');
    }
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!response.ok) {
      const why = body && body.error ? body.error : text.slice(0, 200) || response.statusText;
      throw new HttpError(response.status, path + ': HTTP ' + response.status + ': ' + why, body);
    }
    return body;
  }

  // ---- DOM helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAll(e, attrs);
    e.append(...children.filter((c) => c !== null && c !== undefined).map(asNode));
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    setAll(e, attrs);
    e.append(...children.filter((c) => c !== null && c !== undefined).map(asNode));
    return e;
  }
  function asNode(c) { return c instanceof Node ? c : document.createTextNode(String(c)); }
  function setAll(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined && v !== false) e.setAttribute(k, String(v));
  }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function show(id, on) { $(id).hidden = !on; }

  // ---- formats

  const dash = '–';
  function num(n) {
    if (n === null || n === undefined || !isFinite(n)) return dash;
    if (Math.abs(n) >= 100) return String(Math.round(n));
    if (Math.abs(n) >= 10) return n.toFixed(1);
    return n === 0 ? '0' : n.toFixed(2);
  }
  function count(n) { return n === null || n === undefined ? dash : Number(n).toLocaleString('en-US'); }
  function bytes(n) {
    if (n === null || n === undefined) return dash;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }
  function duration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return dash;
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = Math.floor(ms / 1000);
    if (s < 60) return (ms / 1000).toFixed(s < 10 ? 2 : 1) + ' s';
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const pad = (x) => String(x).padStart(2, '0');
    return h ? h + 'h ' + pad(m) + 'm ' + pad(r) + 's' : m + 'm ' + pad(r) + 's';
  }
  function micros(us) { return us === null || us === undefined ? dash : us < 1000 ? us + ' µs' : (us / 1000).toFixed(1) + ' ms'; }
  function percent(x) { return x === null || x === undefined ? dash : Math.round(x * 100) + '%'; }
  function clock(ms) { return ms ? new Date(ms).toLocaleTimeString() : dash; }
  function short(digest) { return digest ? String(digest).slice(0, 12) : dash; }

  // ---- status bar

  function status(text, kind) {
    const s = $('status');
    s.textContent = text;
    s.className = 'status ' + (kind || '');
  }

  // ---- polling

  async function poll() {
    try {
      if (!S.token) {
        show('token-box', true);
        status('no token: open /ui#token=TOKEN or paste it below', 'error');
        return;
      }
      const jobs = await api('/jobs');
      S.jobs = Array.isArray(jobs) ? jobs : [];
      const job = pickJob();
      let note = '';
      if (job) {
        let metrics = null;
        try {
          metrics = await api('/jobs/' + encodeURIComponent(job.name) + '/metrics');
        } catch (e) {
          if (e.status !== 404) throw e;
          note = ' · no metrics for ' + job.name;
        }
        sample(job, metrics);
      }
      if (!S.workersOff && S.ticks % WORKERS_EVERY === 0) await pollWorkers();
      render();
      status('updated ' + new Date().toLocaleTimeString() + ' · ' + S.jobs.length + ' job(s)' + note, 'ok');
    } catch (e) {
      if (e.status === 401) show('token-box', true);
      status(e.message, 'error');
    } finally {
      S.ticks++;
      if (S.token) setTimeout(poll, POLL_MS);
    }
  }

  async function pollWorkers() {
    try {
      const workers = await api('/workers');
      renderWorkers(Array.isArray(workers) ? workers : []);
    } catch (e) {
      if (e.status === 404) { S.workersOff = true; show('workers-box', false); return; } // embedded: no workers
      throw e;
    }
  }

  function pickJob() {
    let job = S.jobs.find((j) => j.name === S.job);
    if (!job) job = S.jobs.find((j) => !TERMINAL.has(j.state)) || S.jobs[0];
    if (job && job.name !== S.job) selectJob(job.name);
    return job || null;
  }

  function selectJob(name) {
    S.job = name;
    sessionStorage.setItem('weir-job', name);
    S.prev = null; S.rates = {}; S.history = []; S.metrics = null; S.node = ''; S.graphKey = '';
  }

  // ---- rates from two samples of cumulative counters

  function sums(node) {
    const subs = Array.isArray(node.subtasks) ? node.subtasks : [];
    const s = { kind: node.kind, n: subs.length, in: 0, out: 0, busy: 0, bp: 0, wm: null, subs: {} };
    let anyWithout = false;
    for (const t of subs) {
      s.in += t.records_in || 0; s.out += t.records_out || 0;
      s.busy += t.busy_ms || 0; s.bp += t.backpressured_ms || 0;
      if (t.watermark === null || t.watermark === undefined) anyWithout = true;
      else s.wm = s.wm === null ? t.watermark : Math.min(s.wm, t.watermark);
      s.subs[t.subtask] = { busy: t.busy_ms || 0, bp: t.backpressured_ms || 0 };
    }
    // A node's input watermark is its slowest subtask's.
    if (anyWithout) s.wm = null;
    return s;
  }

  const ratio = (d, span) => (span > 0 ? Math.min(1, Math.max(0, d / span)) : 0);

  function sample(job, m) {
    if (!m || !Array.isArray(m.nodes)) { S.metrics = null; S.rates = {}; return; }
    const t = Number(m.unix_ms) || Date.now();
    const now = {};
    for (const node of m.nodes) now[node.name] = sums(node);
    const prev = S.prev && S.prev.job === job.name ? S.prev : null;
    S.metrics = m;
    if (prev && t <= prev.t) return; // the same sample again: keep the rates
    if (prev) {
      const dt = t - prev.t;
      const point = { t, nodes: {} };
      for (const [name, c] of Object.entries(now)) {
        const p = prev.nodes[name];
        if (!p) continue;
        const counted = c.kind === 'source' ? c.out - p.out : c.in - p.in;
        // A restart resets the counters: a negative difference is no rate.
        const rate = Math.max(0, counted) * 1000 / dt;
        const span = dt * Math.max(1, c.n);
        const subs = {};
        for (const [i, sub] of Object.entries(c.subs)) {
          const q = p.subs[i];
          if (q) subs[i] = { busy: ratio(sub.busy - q.busy, dt), bp: ratio(sub.bp - q.bp, dt) };
        }
        const lag = c.wm === null ? null : Math.max(0, t - c.wm);
        S.rates[name] = { rate, busy: ratio(c.busy - p.busy, span), bp: ratio(c.bp - p.bp, span), lag, subs };
        point.nodes[name] = { rate, lag };
      }
      S.history.push(point);
      while (S.history.length && S.history[0].t < t - WINDOW_MS) S.history.shift();
    }
    S.prev = { job: job.name, t, nodes: now };
  }

  // ---- rendering

  function current() { return S.jobs.find((j) => j.name === S.job) || null; }

  function render() {
    renderJobs();
    const job = current();
    for (const id of ['job', 'operators-box', 'node-box', 'checkpoints-box', 'actions']) show(id, !!job);
    if (!job) return;
    $('job-name').textContent = job.name;
    const st = $('job-state');
    st.textContent = job.state;
    st.className = 'state state-' + job.state;
    $('job-error').textContent = job.error || '';
    show('job-error', !!job.error);
    $('job-savepoint').textContent = job.savepoint ? 'savepoint: ' + job.savepoint : '';
    show('job-savepoint', !!job.savepoint);
    const nodes = nodesOf(job);
    if (!nodes.some((n) => n.name === S.node)) {
      const first = nodes.find((n) => n.kind === 'operator') || nodes[0];
      S.node = first ? first.name : '';
    }
    renderGraph(job, nodes);
    renderOperators(nodes);
    renderNode(job, nodes.find((n) => n.name === S.node));
    renderCheckpoints(job);
    renderActions(job);
  }

  function renderJobs() {
    const now = Date.now();
    fill($('jobs'), S.jobs.map((j) => {
      const up = j.started_unix_ms && !TERMINAL.has(j.state) ? now - j.started_unix_ms : null;
      const par = Object.entries(j.parallelism || {}).map(([k, v]) => k + '×' + v).join(' ');
      return el('tr', { 'data-job': j.name, class: j.name === S.job ? 'selected' : null },
        el('td', {}, j.name),
        el('td', {}, el('span', { class: 'state state-' + j.state }, j.state)),
        el('td', {}, duration(up)),
        el('td', {}, j.attempt ?? dash),
        el('td', {}, j.restarts ?? dash),
        el('td', {}, j.last_checkpoint ?? dash),
        el('td', { class: 'small' }, par || dash));
    }));
  }

  function renderWorkers(workers) {
    show('workers-box', true);
    fill($('workers'), workers.map((w) => el('tr', { 'data-worker': w.name },
      el('td', {}, w.name), el('td', {}, w.id), el('td', {}, w.slots), el('td', {}, w.free_slots),
      el('td', {}, w.data_addr))));
  }

  /** The job's vertices: from its graph, else from its metrics. */
  function nodesOf(job) {
    const par = job.parallelism || {};
    const counts = {};
    for (const n of (S.metrics && S.metrics.nodes) || []) counts[n.name] = { kind: n.kind, n: (n.subtasks || []).length };
    const g = job.graph && Array.isArray(job.graph.nodes) ? job.graph.nodes : null;
    const list = g ? g.map((n) => ({ name: n.name, kind: n.kind, parallelism: n.parallelism }))
      : Object.entries(counts).map(([name, c]) => ({ name, kind: c.kind }));
    for (const n of list) {
      if (n.parallelism === undefined || n.parallelism === null) n.parallelism = par[n.name] ?? (counts[n.name] ? counts[n.name].n : null);
    }
    return list;
  }

  // Columns by longest path from a source; rows in the graph's order.
  function layout(nodes, edges) {
    const depth = {};
    for (const n of nodes) depth[n.name] = 0;
    for (let round = 0; round < nodes.length; round++) {
      let changed = false;
      for (const e of edges) {
        if (e.from in depth && e.to in depth && depth[e.to] < depth[e.from] + 1) {
          depth[e.to] = depth[e.from] + 1; changed = true;
        }
      }
      if (!changed) break;
    }
    const columns = [];
    for (const n of nodes) (columns[depth[n.name]] = columns[depth[n.name]] || []).push(n);
    return columns.filter(Boolean);
  }

  const BOX = { w: 176, h: 66, gx: 96, gy: 26, pad: 16 };

  function renderGraph(job, nodes) {
    const edges = job.graph && Array.isArray(job.graph.edges) ? job.graph.edges : [];
    const key = JSON.stringify([nodes.map((n) => [n.name, n.kind, n.parallelism]), edges]);
    if (key !== S.graphKey) { S.graphKey = key; drawGraph(nodes, edges); }
    for (const g of $('graph').querySelectorAll('[data-node]')) {
      const name = g.getAttribute('data-node');
      const r = S.rates[name];
      g.querySelector('.rate').textContent = r ? num(r.rate) : dash;
      g.querySelector('rect').setAttribute('fill', r ? colour(r.busy, r.bp) : '#f4f6f8');
      g.setAttribute('data-busy', r ? r.busy.toFixed(3) : '');
      g.setAttribute('data-backpressure', r ? r.bp.toFixed(3) : '');
      g.classList.toggle('selected', name === S.node);
      g.querySelector('title').textContent = name + (r ? ': ' + num(r.rate) + ' records/s, busy ' + percent(r.busy) + ', backpressured ' + percent(r.bp) : '');
    }
  }

  function drawGraph(nodes, edges) {
    const columns = layout(nodes, edges);
    const tallest = Math.max(1, ...columns.map((c) => c.length));
    const height = BOX.pad * 2 + tallest * BOX.h + (tallest - 1) * BOX.gy;
    const width = BOX.pad * 2 + columns.length * BOX.w + Math.max(0, columns.length - 1) * BOX.gx;
    const at = {};
    columns.forEach((col, c) => {
      const top = (height - (col.length * BOX.h + (col.length - 1) * BOX.gy)) / 2;
      col.forEach((n, r) => { at[n.name] = { x: BOX.pad + c * (BOX.w + BOX.gx), y: top + r * (BOX.h + BOX.gy) }; });
    });
    const root = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, width, height, role: 'img' },
      svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#5b6570' }))));
    for (const e of edges) {
      const a = at[e.from], b = at[e.to];
      if (!a || !b) continue;
      const x1 = a.x + BOX.w, y1 = a.y + BOX.h / 2, x2 = b.x, y2 = b.y + BOX.h / 2, mx = (x1 + x2) / 2;
      const label = (e.kind || '') + (e.late ? ' · late' : '');
      root.append(svg('g', { class: 'edge' + (e.late ? ' late' : ''), 'data-from': e.from, 'data-to': e.to, 'data-kind': e.kind },
        svg('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' }),
        svg('text', { class: 'edge-label', x: mx, y: (y1 + y2) / 2 - 5, 'text-anchor': 'middle' }, label)));
    }
    for (const n of nodes) {
      const p = at[n.name];
      const name = n.name.length > 22 ? n.name.slice(0, 21) + '…' : n.name;
      root.append(svg('g', { class: 'vertex kind-' + n.kind, 'data-node': n.name, 'data-kind': n.kind, transform: `translate(${p.x},${p.y})`, tabindex: 0 },
        svg('title', {}, n.name),
        svg('rect', { width: BOX.w, height: BOX.h, rx: 6, fill: '#f4f6f8' }),
        svg('text', { class: 'vname', x: 10, y: 20 }, name),
        svg('text', { class: 'vkind', x: 10, y: 37 }, n.kind + (n.parallelism ? ' · ×' + n.parallelism : '')),
        svg('text', { class: 'vrate', x: 10, y: 56 }, svg('tspan', { class: 'rate' }, dash), svg('tspan', { class: 'unit' }, ' records/s'))));
    }
    $('graph').replaceChildren(root);
  }

  // Idle: pale blue; busy: orange; backpressured: red (backpressure wins).
  function colour(busy, bp) {
    const mix = (a, b, t) => a.map((x, i) => Math.round(x + (b[i] - x) * t));
    const c = mix(mix([231, 240, 250], [253, 190, 120], busy), [240, 110, 100], bp);
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function series(name, field) {
    return S.history.map((p) => [p.t, p.nodes[name] ? p.nodes[name][field] : null]);
  }

  // A line over the history kept (at most WINDOW_MS, at least a minute
  // wide so a fresh page does not stretch a few seconds); gaps where a
  // value is missing.
  function sparkline(points, w, h, fmt, big) {
    const end = points.length ? points[points.length - 1][0] : Date.now();
    const span = Math.min(WINDOW_MS, Math.max(60000, points.length ? end - points[0][0] : 0));
    const values = points.map((p) => p[1]).filter((v) => v !== null && v !== undefined);
    const max = Math.max(1e-9, ...values);
    const top = big ? 14 : 2, bottom = h - 2;
    const x = (t) => w - ((end - t) / span) * w;
    const y = (v) => bottom - (v / max) * (bottom - top);
    const root = svg('svg', { class: 'spark', width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    let d = '', pen = false;
    for (const [t, v] of points) {
      if (v === null || v === undefined) { pen = false; continue; }
      d += (pen ? 'L' : 'M') + x(t).toFixed(1) + ',' + y(v).toFixed(1);
      pen = true;
    }
    root.append(svg('line', { x1: 0, y1: bottom, x2: w, y2: bottom, class: 'axis' }));
    if (d) root.append(svg('path', { d }));
    const last = values.length ? values[values.length - 1] : null;
    root.append(svg('title', {}, 'last ' + fmt(last) + ', max ' + fmt(values.length ? max : null)));
    if (big) root.append(svg('text', { x: 2, y: 11, class: 'axis-label' }, 'max ' + fmt(values.length ? max : null) + ' · now ' + fmt(last)));
    return root;
  }

  function metricsNode(name) {
    return ((S.metrics && S.metrics.nodes) || []).find((n) => n.name === name) || null;
  }
  // Totals over subtasks of a gauge; null if no subtask reports it.
  function total(node, field) {
    let sum = null;
    for (const t of (node && node.subtasks) || []) if (t[field] !== null && t[field] !== undefined) sum = (sum || 0) + t[field];
    return sum;
  }
  function highest(node, field) {
    let max = null;
    for (const t of (node && node.subtasks) || []) if (t[field] !== null && t[field] !== undefined) max = Math.max(max ?? t[field], t[field]);
    return max;
  }

  function renderOperators(nodes) {
    fill($('operators'), nodes.map((n) => {
      const r = S.rates[n.name];
      const m = metricsNode(n.name);
      return el('tr', { 'data-operator': n.name, class: n.name === S.node ? 'selected' : null },
        el('td', {}, n.name), el('td', {}, n.kind), el('td', {}, n.parallelism ?? dash),
        el('td', { class: 'ops-rate num' }, r ? num(r.rate) : dash),
        el('td', {}, sparkline(series(n.name, 'rate'), 120, 24, num)),
        el('td', {}, sparkline(series(n.name, 'lag'), 120, 24, duration)),
        el('td', { class: 'num' }, r ? duration(r.lag) : dash),
        el('td', { class: 'num' }, r ? percent(r.busy) : dash),
        el('td', { class: 'num' }, r ? percent(r.bp) : dash),
        el('td', { class: 'num' }, count(total(m, 'state_keys'))),
        el('td', { class: 'num' }, bytes(total(m, 'state_bytes'))),
        el('td', { class: 'num' }, count(total(m, 'timers'))),
        el('td', { class: 'num' }, bytes(total(m, 'guest_memory_bytes'))),
        el('td', { class: 'num' }, micros(highest(m, 'call_p99_us'))));
    }));
  }

  function renderNode(job, node) {
    show('node-box', !!node);
    if (!node) return;
    $('node-name').textContent = node.name + ' (' + node.kind + ')';
    for (const w of document.querySelectorAll('.window')) w.textContent = WINDOW_MS / 60000 + ' min';
    $('node-throughput').replaceChildren(sparkline(series(node.name, 'rate'), 440, 110, num, true));
    $('node-lag').replaceChildren(sparkline(series(node.name, 'lag'), 440, 110, duration, true));
    const m = metricsNode(node.name);
    const r = S.rates[node.name];
    fill($('subtasks'), ((m && m.subtasks) || []).map((t) => {
      const sr = r && r.subs[t.subtask];
      return el('tr', { 'data-subtask': t.subtask },
        el('td', {}, t.subtask), el('td', { class: 'num' }, count(t.records_in)), el('td', { class: 'num' }, count(t.records_out)),
        el('td', { class: 'num' }, bytes(t.bytes_in)), el('td', { class: 'num' }, bytes(t.bytes_out)),
        el('td', { class: 'num' }, count(t.late_records)),
        el('td', { class: 'num' }, sr ? percent(sr.busy) : dash), el('td', { class: 'num' }, sr ? percent(sr.bp) : dash),
        el('td', {}, t.watermark === null || t.watermark === undefined ? dash : new Date(t.watermark).toISOString()),
        el('td', { class: 'num' }, count(t.state_keys)), el('td', { class: 'num' }, bytes(t.state_bytes)),
        el('td', { class: 'num' }, count(t.timers)), el('td', { class: 'num' }, bytes(t.guest_memory_bytes)),
        el('td', { class: 'num' }, micros(t.call_p99_us)));
    }));
    const v = (job.versions || []).find((x) => x.operator === node.name);
    const history = v && Array.isArray(v.history) ? v.history.slice().reverse() : [];
    fill($('versions'), history.map((h) => el('tr', { class: v && h.digest === v.digest ? 'current' : null },
      el('td', { class: 'mono', title: h.digest }, short(h.digest)),
      el('td', {}, h.checkpoint ?? 'start'),
      el('td', {}, h.since_unix_ms ? new Date(h.since_unix_ms).toLocaleString() : dash))));
  }

  function renderCheckpoints(job) {
    const list = Array.isArray(job.checkpoints) ? job.checkpoints.slice().reverse() : [];
    fill($('checkpoints'), list.map((c) => el('tr', { 'data-checkpoint': c.id, class: 'cp-' + c.status + (c.savepoint ? ' savepoint' : '') },
      el('td', {}, c.id), el('td', {}, c.savepoint ? 'savepoint' : 'checkpoint'),
      el('td', {}, clock(c.started_unix_ms)), el('td', { class: 'num' }, duration(c.duration_ms)),
      el('td', { class: 'num' }, bytes(c.bytes)),
      el('td', { title: c.reason || null }, c.status + (c.reason ? ': ' + c.reason : '')))));
  }

  // Refills a select only when its choices change, so a choice survives polls.
  function options(select, names, first) {
    const want = (first ? [first] : []).concat(names.map((n) => [n, n]));
    const key = JSON.stringify(want);
    if (select.dataset.key === key) return;
    const chosen = select.value;
    select.dataset.key = key;
    select.replaceChildren(...want.map(([value, label]) => el('option', { value }, label)));
    if (want.some(([value]) => value === chosen)) select.value = chosen;
  }

  function renderActions(job) {
    options($('upgrade-operator'), (job.versions || []).map((v) => v.operator));
    options($('rescale-operator'), Object.keys(job.parallelism || {}), ['', 'all operators']);
    const off = S.busy || TERMINAL.has(job.state);
    for (const b of document.querySelectorAll('#actions button')) b.disabled = off;
  }

  // ---- actions

  const ACTIONS = {
    savepoint: { path: 'savepoints', ask: 'Take a savepoint of', body: dirBody },
    stop: { path: 'stop', ask: 'Stop, after a savepoint,', body: dirBody },
    cancel: { path: 'cancel', ask: 'Cancel (no savepoint)', body: () => ({}) },
    upgrade: {
      path: 'upgrade', ask: 'Upgrade an operator of',
      body: () => {
        const operator = $('upgrade-operator').value, artifact = $('upgrade-artifact').value.trim();
        const rollback = $('upgrade-rollback').checked;
        if (!operator) throw new Error('choose the operator to upgrade');
        if (!artifact && !rollback) throw new Error('name the artifact to upgrade to (or tick roll back)');
        return { operator, artifact: artifact || undefined, rollback, allow_dropping_state: $('upgrade-drop-state').checked };
      },
    },
    rescale: {
      path: 'rescale', ask: 'Rescale',
      body: () => {
        const p = Number($('rescale-parallelism').value);
        if (!Number.isInteger(p) || p < 1) throw new Error('parallelism must be a whole number ≥ 1');
        return { parallelism: p, operator: $('rescale-operator').value || undefined };
      },
    },
  };

  function dirBody() {
    const dir = $('savepoint-dir').value.trim();
    return dir ? { dir } : {};
  }

  function showReply(name, job, state, lines) {
    const out = $('last-action');
    out.dataset.status = state;
    out.dataset.action = name;
    out.textContent = [name + ' ' + job + ': ' + state].concat(lines).join('\n');
  }

  async function act(name) {
    const job = current();
    const a = ACTIONS[name];
    if (!job || !a || S.busy) return;
    let body;
    try { body = a.body(); } catch (e) { showReply(name, job.name, 'error', ['error: ' + e.message]); return; }
    const detail = Object.entries(body).filter(([, v]) => v !== undefined && v !== false).map(([k, v]) => k + '=' + v).join(', ');
    if (!confirm(a.ask + ' job ' + job.name + '?' + (detail ? '\n' + detail : ''))) return;
    S.busy = true;
    renderActions(job);
    showReply(name, job.name, 'pending', []);
    try {
      const reply = await api('/jobs/' + encodeURIComponent(job.name) + '/' + a.path, { method: 'POST', body: JSON.stringify(body) }) || {};
      const lines = ['path', 'checkpoint', 'digest', 'attempt', 'error']
        .filter((k) => reply[k] !== undefined && reply[k] !== null).map((k) => k + ': ' + reply[k]);
      showReply(name, job.name, reply.error ? 'error' : 'ok', lines);
    } catch (e) {
      const why = e.body && e.body.error ? e.body.error : e.message;
      showReply(name, job.name, 'error', ['error: ' + why]);
    } finally {
      S.busy = false;
      const now = current();
      if (now) renderActions(now);
    }
  }

  // ---- wiring

  function closestAttr(target, attr) {
    const e = target instanceof Element ? target.closest('[' + attr + ']') : null;
    return e ? e.getAttribute(attr) : null;
  }

  function start() {
    S.token = takeToken();
    S.job = sessionStorage.getItem('weir-job') || '';
    $('jobs').addEventListener('click', (ev) => {
      const name = closestAttr(ev.target, 'data-job');
      if (name && name !== S.job) { selectJob(name); render(); }
    });
    const pickNode = (ev, attr) => {
      const name = closestAttr(ev.target, attr);
      if (name) { S.node = name; render(); }
    };
    $('graph').addEventListener('click', (ev) => pickNode(ev, 'data-node'));
    $('graph').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') pickNode(ev, 'data-node'); });
    $('operators').addEventListener('click', (ev) => pickNode(ev, 'data-operator'));
    for (const name of Object.keys(ACTIONS)) $('action-' + name).addEventListener('click', () => act(name));
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = $('token-input').value.trim();
      if (!token) return;
      const first = !S.token;
      S.token = token;
      sessionStorage.setItem('weir-token', token);
      $('token-input').value = '';
      show('token-box', false);
      if (first) poll();
    });
    poll();
  }

  // For a plain test of the logic (node): the pure parts, without a DOM.
  if (typeof module === 'object' && module.exports) {
    module.exports = { num, bytes, duration, layout, colour, sums, ratio, sample, S };
  } else {
    document.addEventListener('DOMContentLoaded', start);
  }
})();
