// netsemd's status page: polls the JSON API every 2 s while the tab is
// visible and renders what it reads. Everything the server sends (names,
// labels, peers) goes into the DOM as text (textContent, attributes set one
// by one), never as markup: a name is arbitrary UTF-8 and may well be
// `<img src=x onerror=alert(1)>`. State a user chose (filter, page size,
// expanded names) lives in the URL's fragment, so a view can be linked:
//   /#prefix=build%3A&open=build%3Alinux&open=build%3Amac
'use strict';

const POLL_MS = 2000;     // between the end of one refresh and the next
const TIMEOUT_MS = 5000;  // a request not answered by then counts as a failure
const MAX_OPEN = 20;      // expanded names fetched per refresh, at most

const $ = (id) => document.getElementById(id);
const numberFormat = new Intl.NumberFormat();

// ---------------------------------------------------------------- state ---

const state = {
  prefix: '',
  limit: 100,
  semaphorePages: [null],  // the `after` cursor of each page up to the current one
  semaphoreNext: null,
  sessionPages: [null],
  sessionNext: null,
  open: new Set(),     // expanded names
  version: 0,          // bumped by every user change: older answers are dropped
  lastSuccess: null,   // Date of the last complete refresh
  failingSince: null,  // Date of the first failure of the current run of failures
};

// An answer that is not a usable reply: the server did not answer, or
// answered with an error status.
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;  // 0 when nothing came back
  }
}

// The bearer token of a server that requires one (docs/security.md), kept
// for this tab only. The page asks for it by itself once, at the first 401;
// after that (a token refused, the prompt cancelled) only the banner's
// "Enter a token" button asks, so that a wrong token never becomes a prompt
// at every poll that the user cannot get out of.
const TOKEN_KEY = 'netsem.token';
let tokenAsked = false;
function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
}
function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* storage refused: the token is asked for again next time */ }
}
function askForToken() {
  tokenAsked = true;
  const token = (window.prompt('This netsem server requires a token with the read right:', '') || '').trim();
  storeToken(token);
  return token;
}

// GETs `path` and returns its JSON body; throws ApiError. A 401 asks for a
// token and tries once more with it.
async function getJson(path, retried = false) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  const headers = {Accept: 'application/json'};
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    response = await fetch(path, {signal: controller.signal, cache: 'no-store', headers});
  } catch (e) {
    throw new ApiError(
        e.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : 'the connection failed', 0);
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (response.status === 401) {
    // The page's requests go out together: the first 401 asks, the others
    // retry with what it was given.
    const now = storedToken();
    if (!retried && ((now && now !== token) || (!tokenAsked && askForToken()))) return getJson(path, true);
    if (token && now === token) storeToken('');  // refused: not sent again
  }
  if (!response.ok) {
    const detail = body && (body.message || body.error);
    throw new ApiError(`${path}: ${response.status}${detail ? ' ' + detail : ''}`, response.status);
  }
  if (body === null) throw new ApiError(`${path}: the answer is not JSON`, response.status);
  return body;
}

// A name in a URL path or query: every byte but unreserved ones escaped, so
// that `/`, `?`, `#`, `+` and `%` in a name stay part of it.
const encode = (text) => encodeURIComponent(text);

// ------------------------------------------------------------ formatting ---

function formatCount(n) { return typeof n === 'number' ? numberFormat.format(n) : '–'; }

// 950 ms, 12.3 s, 4 min 05 s, 3 h 02 min, 2 d 4 h.
function formatDuration(ms) {
  if (typeof ms !== 'number' || ms < 0) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const pad = (n) => String(n).padStart(2, '0');
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${pad(Math.floor(s % 60))} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${pad(m % 60)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '–' : date.toLocaleTimeString();
}

// An element with text: el('td', {className: 'num'}, '3'). Attributes are
// set as properties or with setAttribute, children appended as nodes or text.
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === 'className' || key === 'textContent' || key === 'title') {
      node[key] = value;
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Sets a node's text only when it changed, so that a live region is not
// announced again every 2 s with the same words.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Text isolated from its neighbours for the bidirectional algorithm.
function isolated(text, className) { return el('bdi', className ? {className} : {}, text); }

// -------------------------------------------------------------- figures ---

// STATS's `cluster` object in words: "follower, term 3, leader 1".
function clusterText(c) {
  const parts = [`${c.role}, term ${c.term}`];
  if (!c.leader_id) parts.push('no leader known');
  else if (c.leader_id !== c.id) parts.push(`leader ${c.leader_id}`);
  if (c.lag > 0) parts.push(`${formatCount(c.lag)} entries behind`);
  return parts.join(', ');
}

// [label, value, bad (shown red), shown (default: always)] of each figure.
const FIGURES = [
  ['Sessions', (s) => formatCount(s.sessions)],
  ['Semaphores', (s) => formatCount(s.semaphores)],
  ['Permits held', (s) => formatCount(s.held)],
  ['Waiting', (s) => formatCount(s.waiters)],
  ['Grants', (s) => formatCount(s.grants)],
  ['Timeouts', (s) => formatCount(s.timeouts_total)],
  ['Requests', (s) => formatCount(s.requests)],
  ['Uptime', (s) => formatDuration(typeof s.uptime_s === 'number' ? s.uptime_s * 1000 : undefined)],
  ['Journal', (s) => (s.journal_ok === 0 ? 'failing' : 'writing'), (s) => s.journal_ok === 0, (s) => !s.cluster],
  // A server in a cluster has no journal (the Raft log is the record): its
  // place in the cluster instead, red while it knows no leader.
  ['Cluster', (s) => clusterText(s.cluster), (s) => !s.cluster.leader_id, (s) => !!s.cluster],
  // A token, written as holders' fences are (no digit grouping).
  ['Last fence', (s) => (typeof s.last_fence === 'number' ? String(s.last_fence) : '–')],
];

function renderStats(reply) {
  const stats = reply.stats || {};
  $('version').textContent = reply.version ? reply.version : '';
  const list = $('figures');
  const items = FIGURES.filter(([, , , shown]) => !shown || shown(stats)).map(([label, value, bad]) => {
    const dd = el('dd', {}, value(stats));
    if (bad && bad(stats)) dd.className = 'bad';
    return el('div', {}, el('dt', {}, label), dd);
  });
  if (typeof stats.lease_wait_ms === 'number' && stats.lease_wait_ms > 0) {
    items.push(el('div', {}, el('dt', {}, 'Restart lease wait'), el('dd', {}, formatDuration(stats.lease_wait_ms))));
  }
  list.replaceChildren(...items);
  const started = reply.started_at ? `started ${new Date(reply.started_at).toLocaleString()}` : '';
  setText($('status-line'), [`protocol ${reply.protocol || '1'}`, started].filter(Boolean).join(' · '));
}

// ---------------------------------------------------------------- charts ---

const SVG = 'http://www.w3.org/2000/svg';

function svgEl(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Draws series [{values, className, area}] (numbers or null, one per
// sample, oldest first) into `svg` on one scale from 0.
function drawChart(svg, series, span, unit) {
  const {width, height} = svg.viewBox.baseVal;
  const left = 34, right = 6, top = 8, bottom = 18;
  const plotW = width - left - right, plotH = height - top - bottom;
  const count = Math.max(...series.map((s) => s.values.length), 2);
  let max = 0;
  for (const s of series)
    for (const v of s.values)
      if (v !== null && v > max) max = v;
  const ceiling = niceCeiling(max);
  const x = (i) => left + (plotW * i) / (count - 1);
  const y = (v) => top + plotH - (plotH * v) / ceiling;
  const nodes = [
    svgEl('line', {class: 'axis', x1: left, y1: top + plotH, x2: width - right, y2: top + plotH}),
    svgEl('line', {class: 'axis', x1: left, y1: top, x2: width - right, y2: top}),
    svgEl('text', {x: left - 4, y: top + 3, 'text-anchor': 'end'}, formatCompact(ceiling)),
    svgEl('text', {x: left - 4, y: top + plotH + 3, 'text-anchor': 'end'}, '0'),
    svgEl('text', {x: left, y: height - 4}, span),
    svgEl('text', {x: width - right, y: height - 4, 'text-anchor': 'end'}, 'now'),
  ];
  for (const s of series) {
    // One polyline per run of known values (a gap where the server restarted).
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        const points = run.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
        if (s.area) {
          const first = x(run[0][0]).toFixed(1), last = x(run[run.length - 1][0]).toFixed(1);
          const base = (top + plotH).toFixed(1);
          nodes.push(svgEl('polygon', {class: s.area, points: `${first},${base} ${points} ${last},${base}`}));
        }
        nodes.push(svgEl('polyline', {class: s.className, points}));
      }
      run = [];
    };
    // Right-aligned: the newest sample is at "now".
    const offset = count - s.values.length;
    s.values.forEach((v, i) => (v === null ? flush() : run.push([i + offset, v])));
    flush();
  }
  if (!nodes.some((node) => node.tagName === 'polyline')) {
    nodes.push(svgEl(
        'text', {x: left + plotW / 2, y: top + plotH / 2, 'text-anchor': 'middle'}, 'no data yet: a sample every 5 s'));
  }
  const latest = series.map((s) => `${s.label} ${formatCompact(s.values[s.values.length - 1] ?? 0)}${unit}`);
  nodes.push(svgEl(
      'title', {},
      `${latest.join(', ')} now; at most ${formatCompact(max)}${unit} in the last ${span.replace(/ ago$/, '')}`));
  svg.replaceChildren(...nodes);
}

function niceCeiling(max) {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10])
    if (max <= m * step) return m * step;
  return 10 * step;
}

function formatCompact(v) {
  if (v >= 1e6) return `${Number((v / 1e6).toFixed(1))}M`;
  if (v >= 1e4) return `${Number((v / 1e3).toFixed(1))}k`;
  return v >= 10 || v === 0 ? String(Math.round(v)) : String(Number(v.toFixed(2)));
}

// Per-second rates from cumulative counters: null where a counter went back
// (the server restarted between two samples) or time did not move.
function rates(samples, key) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (Date.parse(samples[i].at) - Date.parse(samples[i - 1].at)) / 1000;
    const dv = samples[i][key] - samples[i - 1][key];
    out.push(dt > 0 && dv >= 0 && Number.isFinite(dv) ? dv / dt : null);
  }
  return out;
}

function renderHistory(reply) {
  const samples = Array.isArray(reply.samples) ? reply.samples : [];
  const intervalMs = reply.interval_ms || 5000;
  const minutes = Math.max(1, Math.round((Math.max(samples.length - 1, 1) * intervalMs) / 60000));
  const span = `${minutes} min ago`;
  drawChart(
      $('chart-grants'),
      [
        {label: 'grants', values: rates(samples, 'grants'), className: 'grants', area: 'grants-area'},
        {label: 'timeouts', values: rates(samples, 'timeouts'), className: 'timeouts'},
      ],
      span, '/s');
  const waiting = samples.map((s) => (typeof s.waiting === 'number' ? s.waiting : null));
  drawChart(
      $('chart-waiting'), [{label: 'waiting', values: waiting, className: 'waiting', area: 'waiting-area'}], span, '');
}

// ------------------------------------------------------------ semaphores ---

// Rows by name, kept across refreshes so that focus and expansion survive.
const semaphoreRows = new Map();
let rowSerial = 0;

function semaphoreRow(name) {
  let row = semaphoreRows.get(name);
  if (row) return row;
  const id = `semaphore-${++rowSerial}`;
  const button =
      el('button', {type: 'button', className: 'name', 'aria-expanded': 'false', 'aria-controls': `${id}-detail`});
  button.append(isolated(name));
  button.addEventListener('click', () => toggle(name));
  const kind = el('span', {className: 'kind'});
  const fill = el('span');
  const bar = el('span', {className: 'bar', 'aria-hidden': 'true'}, fill);
  const use = el('span');
  row = {
    tr:
        el('tr', {id}, el('th', {scope: 'row', className: 'name'}, button), el('td', {}, kind),
           el('td', {}, el('span', {className: 'use'}, bar, use)), el('td', {className: 'num'}),
           el('td', {className: 'num'})),
    button,
    kind,
    bar,
    fill,
    use,
    detail: null,  // the expanded row, while open
    id,
  };
  semaphoreRows.set(name, row);
  return row;
}

function updateSemaphoreRow(row, s) {
  row.kind.textContent = s.kind;
  const inUse = Math.max(0, s.max - s.value);
  const fraction = s.max > 0 ? inUse / s.max : 0;
  row.fill.style.width = `${(fraction * 100).toFixed(1)}%`;
  row.bar.className = `bar${fraction >= 1 && s.max > 0 ? ' full' : fraction >= 0.75 ? ' high' : ''}`;
  row.use.textContent = `${formatCount(inUse)} of ${formatCount(s.max)}`;
  row.use.title = `value ${s.value} (free permits), max ${s.max}`;
  row.tr.cells[3].textContent = formatCount(s.holders);
  row.tr.cells[4].textContent = formatCount(s.waiters);
}

function toggle(name) {
  if (state.open.has(name)) {
    state.open.delete(name);
  } else {
    state.open.add(name);
  }
  writeHash();
  const row = semaphoreRows.get(name);
  if (row) placeDetail(row, name);
  refresh();
}

// Shows or removes the detail row under `row` as state.open says.
function placeDetail(row, name) {
  const open = state.open.has(name);
  row.button.setAttribute('aria-expanded', String(open));
  if (open && !row.detail) {
    const cell = el('td', {colspan: '5'}, el('p', {className: 'empty'}, 'Loading…'));
    row.detail = el('tr', {className: 'detail', id: `${row.id}-detail`}, cell);
  }
  if (open) {
    if (row.tr.nextSibling !== row.detail) row.tr.after(row.detail);
  } else if (row.detail) {
    row.detail.remove();
    row.detail = null;
  }
}

function renderSemaphores(reply) {
  const list = Array.isArray(reply.semaphores) ? reply.semaphores : [];
  const tbody = $('semaphores').tBodies[0];
  const keep = new Set();
  let position = 0;
  for (const s of list) {
    keep.add(s.name);
    const row = semaphoreRow(s.name);
    updateSemaphoreRow(row, s);
    // Move a row only when it is out of place, so that a focused button stays focused.
    if (tbody.children[position] !== row.tr) tbody.insertBefore(row.tr, tbody.children[position] || null);
    position++;
    placeDetail(row, s.name);
    if (row.detail) position++;
  }
  for (const [name, row] of semaphoreRows) {
    if (keep.has(name)) continue;
    row.tr.remove();
    if (row.detail) row.detail.remove();
    semaphoreRows.delete(name);
  }
  state.semaphoreNext = reply.next ?? null;
  const empty = $('semaphores-empty');
  empty.hidden = list.length > 0;
  empty.textContent = state.prefix ? `No semaphore's name starts with “${state.prefix}”.` : 'No semaphores.';
  const page = state.semaphorePages.length;
  setText($('semaphores-page'), list.length ? `Page ${page}: ${list.length} name${list.length === 1 ? '' : 's'}` : '');
  $('semaphores-first').disabled = page === 1;
  $('semaphores-prev').disabled = page === 1;
  $('semaphores-next').disabled = state.semaphoreNext === null;
}

function renderDetail(name, reply, error) {
  const row = semaphoreRows.get(name);
  if (!row || !row.detail) return;
  const cell = row.detail.cells[0];
  if (error) {
    cell.replaceChildren(
        el('p', {className: 'empty'},
           error.status === 404 ? 'This name is no longer in the table.' : `Not available: ${error.message}`));
    return;
  }
  const holders = Array.isArray(reply.holders) ? reply.holders : [];
  const waiters = Array.isArray(reply.waiters) ? reply.waiters : [];
  const holderTable = table(
      ['Session', 'Label', 'Peer', 'Count', 'Fence', 'Since', 'Held for'], [0, 3, 4, 6], 1,
      holders.map(
          (h) =>
              [h.session, isolated(h.label ?? '', 'mono'), isolated(h.peer ?? '', 'mono'), formatCount(h.count),
               String(h.fence), formatTime(h.since_at), formatDuration(h.held_ms)]));
  const waiterTable = table(
      ['Position', 'Session', 'Label', 'Peer', 'Count', 'Waited', 'Timeout left'], [0, 1, 4, 5, 6], 2,
      waiters.map(
          (w, i) =>
              [i + 1, w.session, isolated(w.label ?? '', 'mono'), isolated(w.peer ?? '', 'mono'), formatCount(w.count),
               formatDuration(w.waited_ms),
               w.timeout_left_ms === null ? 'no timeout' : formatDuration(w.timeout_left_ms)]));
  const section = (className, title, count, tableNode, emptyText) =>
      el('section', {className}, el('h3', {}, `${title} (${count})`),
         count ? tableNode : el('p', {className: 'empty'}, emptyText));
  const children =
      [el('div', {className: 'detail-grid'},
          section('holders', 'Holders', holders.length, holderTable, 'Nobody holds a permit.'),
          section('queue', 'Queue', waiters.length, waiterTable, 'Nobody waits.'))];
  if (reply.truncated)
    children.push(el('p', {className: 'note'}, 'Only the first 1000 holders and waiters are shown.'));
  cell.replaceChildren(...children);
}

// A small table: `numeric` lists the columns aligned right; only column
// `wrapping` (the label) may wrap.
function table(headings, numeric, wrapping, rows) {
  const className = (i) => (numeric.includes(i) ? 'num' : i === wrapping ? 'wrap' : '');
  const head = el('tr', {}, ...headings.map((h, i) => el('th', {scope: 'col', className: className(i)}, h)));
  const body = rows.map((cells) => el('tr', {}, ...cells.map((c, i) => el('td', {className: className(i)}, c))));
  return el('table', {className: 'grid'}, el('thead', {}, head), el('tbody', {}, ...body));
}

// -------------------------------------------------------------- sessions ---

function renderSessions(reply) {
  const list = Array.isArray(reply.sessions) ? reply.sessions : [];
  const rows = list.map(
      (s) => el(
          'tr', {}, el('td', {className: 'num'}, String(s.id)), el('td', {}, isolated(s.label ?? '', 'mono')),
          el('td', {}, isolated(s.peer ?? '', 'mono')), el('td', {}, s.dialect ?? ''),
          el('td', {className: 'num'}, formatCount(s.permits_held)),
          el('td', {className: 'num'}, formatCount(s.pending)), el('td', {className: 'num'}, formatDuration(s.age_ms)),
          el('td', {className: 'num'}, formatDuration(s.idle_ms))));
  $('sessions').tBodies[0].replaceChildren(...rows);
  $('sessions-empty').hidden = list.length > 0;
  state.sessionNext = reply.next ?? null;
  const page = state.sessionPages.length;
  setText($('sessions-page'), list.length ? `Page ${page}: ${list.length} session${list.length === 1 ? '' : 's'}` : '');
  $('sessions-first').disabled = page === 1;
  $('sessions-prev').disabled = page === 1;
  $('sessions-next').disabled = state.sessionNext === null;
}

// --------------------------------------------------------------- refresh ---

function semaphoresPath() {
  const query = [`limit=${state.limit}`];
  if (state.prefix) query.push(`prefix=${encode(state.prefix)}`);
  const after = state.semaphorePages[state.semaphorePages.length - 1];
  if (after !== null) query.push(`after=${encode(after)}`);
  return `/api/v1/semaphores?${query.join('&')}`;
}

function sessionsPath() {
  const query = [`limit=${state.limit}`];
  const after = state.sessionPages[state.sessionPages.length - 1];
  if (after !== null) query.push(`after=${encode(String(after))}`);
  return `/api/v1/sessions?${query.join('&')}`;
}

let timer = null;
let running = false;
let again = false;

// Reads everything once and renders it; one refresh at a time (a call while
// one runs makes it run once more at its end). Schedules the next one while
// the page is visible.
async function refresh() {
  if (running) {
    again = true;
    return;
  }
  running = true;
  clearTimeout(timer);
  timer = null;
  const version = state.version;
  const outcome = await Promise.allSettled(
      [getJson('/api/v1/stats'), getJson('/api/v1/history'), getJson(semaphoresPath()), getJson(sessionsPath())]);
  const failures = outcome.filter((o) => o.status === 'rejected').map((o) => o.reason);
  if (version === state.version) {
    const [stats, history, semaphores, sessions] = outcome.map((o) => (o.status === 'fulfilled' ? o.value : null));
    if (stats) renderStats(stats);
    if (history) renderHistory(history);
    if (semaphores) renderSemaphores(semaphores);
    $('filter-error').textContent = '';
    const semaphoreFailure = outcome[2].status === 'rejected' ? outcome[2].reason : null;
    if (semaphoreFailure && semaphoreFailure.status === 400) {
      // A prefix the server refuses (e.g. one starting with `$`): say so by the box.
      $('filter-error').textContent = semaphoreFailure.message.replace(/^[^:]*: 400 /, '');
      failures.splice(failures.indexOf(semaphoreFailure), 1);
      renderSemaphores({semaphores: [], next: null});
    }
    if (sessions) renderSessions(sessions);
    if (semaphores) await refreshDetails(version);
  }
  const unreachable = failures.find((f) => f.status === 0) || failures.find((f) => f.status >= 500) || failures[0];
  showHealth(unreachable);
  running = false;
  if (again) {
    again = false;
    refresh();
  } else if (!document.hidden) {
    timer = setTimeout(refresh, POLL_MS);
  }
}

async function refreshDetails(version) {
  const names = [...state.open].filter((name) => semaphoreRows.has(name)).slice(0, MAX_OPEN);
  // The name goes in the query, not the path: a browser resolves `.` and
  // `..` as path segments (%2E too), and they are valid names.
  const replies =
      await Promise.allSettled(names.map((name) => getJson(`/api/v1/semaphore?name=${encode(name)}`)));
  if (version !== state.version) return;
  replies.forEach(
      (r, i) =>
          renderDetail(names[i], r.status === 'fulfilled' ? r.value : null, r.status === 'rejected' ? r.reason : null));
}

function showHealth(failure) {
  const banner = $('banner');
  if (!failure) {
    state.lastSuccess = new Date();
    state.failingSince = null;
    banner.hidden = true;
    banner.textContent = '';
    document.body.classList.remove('stale');
    $('updated').textContent = `Updated ${state.lastSuccess.toLocaleTimeString()}.`;
    return;
  }
  state.failingSince = state.failingSince || new Date();
  const since = state.failingSince.toLocaleTimeString();
  const what = failure.status === 0 ? `netsemd is not answering (since ${since}): ${failure.message}.` :
      failure.status === 503 ? `netsemd is busy or not ready (since ${since}): ${failure.message}.` :
      failure.status === 401 ? `netsemd requires a token with the read right (${failure.message}).` :
      failure.status === 403 ? `This token may not read everything the page shows (${failure.message}).` :
                               `netsemd answered with an error (since ${since}): ${failure.message}.`;
  const shown = state.lastSuccess ? ` The figures below are from ${state.lastSuccess.toLocaleTimeString()}.` : '';
  banner.textContent = `${what}${shown} Trying again every ${POLL_MS / 1000} s.`;
  if (failure.status === 401 || failure.status === 403) {
    // No token, a refused one, or one without the read right: ask for another.
    const button = document.createElement('button');
    button.type = 'button';
    button.id = 'token-button';
    button.textContent = 'Enter a token';
    button.addEventListener('click', () => {
      if (askForToken()) refresh();
    });
    banner.append(' ', button);
  }
  banner.hidden = false;
  document.body.classList.add('stale');
}

// ------------------------------------------------------- user and the URL ---

function changed() {
  state.version++;
  writeHash();
  refresh();
}

function writeHash() {
  const parts = [];
  if (state.prefix) parts.push(`prefix=${encode(state.prefix)}`);
  if (state.limit !== 100) parts.push(`limit=${state.limit}`);
  for (const name of state.open) parts.push(`open=${encode(name)}`);
  const hash = parts.length ? `#${parts.join('&')}` : '';
  if (location.hash !== hash) history.replaceState(null, '', hash || location.pathname);
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1).replace(/\+/g, '%2B'));
  state.prefix = params.get('prefix') || '';
  const limit = Number(params.get('limit'));
  state.limit = [25, 100, 500, 1000].includes(limit) ? limit : 100;
  state.open = new Set(params.getAll('open'));
  state.semaphorePages = [null];
  $('prefix').value = state.prefix;
  $('page-size').value = String(state.limit);
}

function setup() {
  readHash();
  let debounce = null;
  const applyPrefix = () => {
    clearTimeout(debounce);
    const prefix = $('prefix').value;
    if (prefix === state.prefix) return;
    state.prefix = prefix;
    state.semaphorePages = [null];
    changed();
  };
  $('prefix').addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(applyPrefix, 300);
  });
  $('filter').addEventListener('submit', (event) => {
    event.preventDefault();
    applyPrefix();
  });
  $('page-size').addEventListener('change', () => {
    state.limit = Number($('page-size').value);
    state.semaphorePages = [null];
    state.sessionPages = [null];
    changed();
  });
  const pager = (kind, pages, next) => {
    $(`${kind}-first`).addEventListener('click', () => {
      state[pages] = [null];
      changed();
    });
    $(`${kind}-prev`).addEventListener('click', () => {
      if (state[pages].length > 1) state[pages].pop();
      changed();
    });
    $(`${kind}-next`).addEventListener('click', () => {
      if (state[next] === null) return;
      state[pages].push(state[next]);
      changed();
    });
  };
  pager('semaphores', 'semaphorePages', 'semaphoreNext');
  pager('sessions', 'sessionPages', 'sessionNext');
  window.addEventListener('hashchange', () => {
    readHash();
    changed();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      refresh();
    }
  });
  refresh();
}

setup();
