// warren management UI: shared pieces (DOM helpers, API client, login, routing, refresh,
// tables with server-side paging, forms, charts). The pages live in pages.js and admin.js.
// Everything shown is built with DOM calls, never from HTML strings, so names that
// clients chose (queues, exchanges, client properties) cannot inject markup.
'use strict';

const W = {
  routes: [],        // [{re, page, tab}]
  page: null,        // the page on screen: {refresh()}
  history: {},       // chart samples per key
  lists: {},         // list view state per list id (filter, page, sort)
  user: null,        // {name, tags}
  vhosts: [],
};

// ---- DOM -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

// Replaces el's content, keeping keyboard focus on the "same" control when the refreshed
// content has one with the same data-fk (links and buttons in tables get one).
function replace(el, ...children) {
  const active = document.activeElement;
  const fk = active && el.contains(active) ? active.getAttribute('data-fk') : null;
  el.replaceChildren();
  append(el, children);
  if (fk) {
    const again = [...el.querySelectorAll('[data-fk]')].find((e) => e.getAttribute('data-fk') === fk);
    if (again) again.focus();
  }
}

let uid = 0;
function nextId(prefix) { uid += 1; return `${prefix || 'f'}-${uid}`; }

function link(href, text) { return h('a', { href, 'data-fk': 'a:' + href }, text); }

function button(label, onclick, attrs) {
  return h('button', Object.assign({ type: 'button', onclick }, attrs || {}), label);
}

function section(title, ...body) {
  const id = nextId('sec');
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), body);
}

// A definition list of facts: [[label, value], ...], skipping empty values.
function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === '') continue;
    dl.append(h('dt', null, k), h('dd', null, v));
  }
  return dl;
}

// ---- formatting --------------------------------------------------------------------

function fmtNum(n) {
  if (n === undefined || n === null || n === '') return '';
  if (typeof n !== 'number') return String(n);
  return n.toLocaleString('en-US');
}

function fmtRate(r) {
  if (r === undefined || r === null) return '';
  const digits = r > 0 && r < 1 ? 2 : 1;
  return (r < 10 ? r.toFixed(digits) : Math.round(r).toLocaleString('en-US')) + '/s';
}

function fmtBytes(b) {
  if (b === undefined || b === null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i += 1; }
  return (i === 0 ? b : b.toFixed(1)) + ' ' + u[i];
}

function fmtUptime(ms) {
  let t = Math.floor((ms || 0) / 1000);
  const d = Math.floor(t / 86400); t -= d * 86400;
  const hh = Math.floor(t / 3600); t -= hh * 3600;
  const m = Math.floor(t / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : `${m}m ${t - m * 60}s`;
}

function fmtTime(ms) {
  return ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '';
}

function get(o, path) {
  return path.split('.').reduce((v, k) => (v === undefined || v === null ? undefined : v[k]), o);
}

function rateOf(o, key) { return get(o, `message_stats.${key}_details.rate`); }

function fmtArgs(args) {
  const keys = Object.keys(args || {});
  if (!keys.length) return '';
  return keys.map((k) => `${k}: ${typeof args[k] === 'object' ? JSON.stringify(args[k]) : args[k]}`).join(', ');
}

// A small table of an object's fields (arguments, client properties, headers).
function kvTable(obj, caption) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return h('p', { class: 'muted' }, '(none)');
  return h('table', { class: 'kv' }, caption ? h('caption', null, caption) : null,
    h('tbody', null, keys.map((k) => h('tr', null, h('th', { scope: 'row' }, k),
      h('td', null, obj[k] !== null && typeof obj[k] === 'object' && !Array.isArray(obj[k])
        ? kvTable(obj[k]) : Array.isArray(obj[k]) ? JSON.stringify(obj[k]) : String(obj[k]))))));
}

const vhostName = (v) => v;
const exchangeName = (n) => (n === '' ? '(AMQP default)' : n);

// ---- API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, reason) { super(reason); this.status = status; }
}

const enc = encodeURIComponent;

async function api(method, path, body, headers) {
  // X-Requested-With: the server then answers 401 without WWW-Authenticate, so the
  // browser shows no credentials dialog of its own.
  const opts = { method, headers: Object.assign({ 'X-Requested-With': 'XMLHttpRequest' }, headers || {}), cache: 'no-store' };
  if (W.auth) opts.headers.Authorization = 'Basic ' + W.auth;
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const resp = await fetch('api' + path, opts);
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (e) { data = text; } }
  if (!resp.ok) {
    const reason = data && typeof data === 'object' ? (data.reason || data.error) : (data || resp.statusText);
    if (resp.status === 401 && path === '/whoami' && W.user) logout();
    throw new ApiError(resp.status, String(reason));
  }
  return data;
}

const apiGet = (path) => api('GET', path);

// ---- messages ----------------------------------------------------------------------

function flash(text, kind) {
  const box = document.getElementById('flash');
  while (box.children.length >= 3) box.firstChild.remove();
  const item = h('div', { class: 'flash ' + (kind || 'ok') }, h('span', null, text),
    button('Dismiss', () => item.remove(), { class: 'link' }));
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 15000 : 6000);
}

function failed(e) { flash(e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : String(e), 'error'); }

// ---- who may see what (RabbitMQ's user tags) ----------------------------------------

function hasTag(t) { return !!W.user && W.user.tags.includes(t); }
function isAdmin() { return hasTag('administrator'); }
function isMonitor() { return isAdmin() || hasTag('monitoring'); }
function isPolicymaker() { return isAdmin() || hasTag('policymaker'); }
function canLogIn(tags) {
  return ['administrator', 'monitoring', 'policymaker', 'management'].some((t) => tags.includes(t));
}

// ---- login -------------------------------------------------------------------------

function parseTags(tags) {
  if (Array.isArray(tags)) return tags;
  return String(tags || '').split(',').map((t) => t.trim()).filter(Boolean);
}

function loginPage(message) {
  document.getElementById('top').hidden = true;
  document.getElementById('alarms').hidden = true;
  const main = document.getElementById('main');
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message || '');
  const form = h('form', { id: 'login', class: 'login', onsubmit: async (ev) => {
    ev.preventDefault();
    const user = form.elements.username.value;
    const pass = form.elements.password.value;
    // btoa needs Latin-1: encode UTF-8 names and passwords first.
    W.auth = btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${pass}`)));
    try {
      const me = await api('GET', '/whoami');
      const tags = parseTags(me.tags);
      if (!canLogIn(tags)) {
        W.auth = null;
        err.textContent = 'Login failed: not a management user.';
        return;
      }
      sessionStorage.setItem('warren.auth', JSON.stringify({ auth: W.auth, name: me.name, tags }));
      await start();
    } catch (e) {
      W.auth = null;
      err.textContent = e.status === 401
        ? (/management/i.test(e.message) ? 'Login failed: not a management user.' : 'Login failed.')
        : `Login failed: ${e.message}`;
    }
  } },
  h('h1', null, 'warren management'),
  h('label', { for: 'login-user' }, 'Username'),
  h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true }),
  h('label', { for: 'login-pass' }, 'Password'),
  h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password' }),
  h('button', { type: 'submit', id: 'login-submit' }, 'Log in'),
  err);
  replace(main, form);
  form.elements.username.focus();
}

function logout() {
  sessionStorage.removeItem('warren.auth');
  W.auth = null;
  W.user = null;
  stopTimer();
  if (W.page && W.page.leave) W.page.leave();
  W.page = null;
  loginPage();
}

// ---- tabs, routing, refresh -----------------------------------------------------------

const TABS = [
  { id: 'overview', label: 'Overview', href: '#/' },
  { id: 'connections', label: 'Connections', href: '#/connections' },
  { id: 'channels', label: 'Channels', href: '#/channels' },
  { id: 'exchanges', label: 'Exchanges', href: '#/exchanges' },
  { id: 'queues', label: 'Queues', href: '#/queues' },
  { id: 'admin', label: 'Admin', href: '#/admin', show: () => isAdmin() || isPolicymaker() },
];

function route(re, tab, page) { W.routes.push({ re, tab, page }); }

function renderTabs(active) {
  replace(document.getElementById('tabs'), TABS.filter((t) => !t.show || t.show()).map((t) =>
    h('li', null, h('a', { href: t.href, id: 'tab-' + t.id, 'aria-current': t.id === active ? 'page' : null }, t.label))));
}

async function navigate() {
  if (!W.user) return;
  if (W.page && W.page.leave) W.page.leave();
  const hash = location.hash || '#/';
  const main = document.getElementById('main');
  let found = null;
  let m = null;
  for (const r of W.routes) {
    m = hash.match(r.re);
    if (m) { found = r; break; }
  }
  const tab = found && TABS.find((t) => t.id === found.tab);
  if (!found || (tab && tab.show && !tab.show())) { location.hash = '#/'; return; }
  renderTabs(found.tab);
  const params = m.slice(1).map((p) => decodeURIComponent(p));
  main.replaceChildren();
  W.page = found.page(main, params) || {};
  document.title = `warren: ${(main.querySelector('h1') || {}).textContent || 'management'}`;
  const page = W.page;
  if (page.refresh) {
    try { await page.refresh(); } catch (e) {
      if (e instanceof ApiError && e.status === 401) await stillLoggedIn();
      if (page === W.page && W.user) failed(e);
    }
  }
  refreshAlarms().catch(() => {});
}

let timer = null;
let ticking = false;
function stopTimer() { if (timer) clearInterval(timer); timer = null; }
function startTimer() {
  stopTimer();
  const secs = Number(document.getElementById('refresh').value);
  if (secs > 0) timer = setInterval(() => { if (!document.hidden) tick(); }, secs * 1000);
}

async function tick() {
  if (ticking || !W.user) return;
  ticking = true;
  try {
    const jobs = [refreshAlarms()];
    if (W.page && W.page.refresh) jobs.push(W.page.refresh());
    await Promise.all(jobs.map((j) => Promise.resolve(j).catch((e) => {
      if (e instanceof ApiError && e.status === 401) return stillLoggedIn();
      console.warn(e);
      return null;
    })));
  } finally {
    ticking = false;
  }
}

// A 401 means either that the credentials went (user deleted, password changed: log out,
// which api() does when /whoami answers 401) or that this user's tags do not allow it.
async function stillLoggedIn() {
  try { await api('GET', '/whoami'); } catch (e) { if (e.status !== 401) console.warn(e); }
}

// Alarms stay visible on every page (RabbitMQ shows them in red on the overview).
async function refreshAlarms() {
  const box = document.getElementById('alarms');
  if (!isMonitor()) { box.hidden = true; return; }
  let nodes;
  try { nodes = await apiGet('/nodes'); } catch (e) { box.hidden = true; return; }
  const alarms = [];
  for (const n of nodes || []) {
    if (n.mem_alarm) alarms.push(`Memory alarm on ${n.name}: ${fmtBytes(n.mem_used)} used, limit ${fmtBytes(n.mem_limit)}. Publishers are blocked.`);
    if (n.disk_free_alarm) alarms.push(`Disk alarm on ${n.name}: ${fmtBytes(n.disk_free)} free, limit ${fmtBytes(n.disk_free_limit)}. Publishers are blocked.`);
  }
  box.hidden = alarms.length === 0;
  replace(box, alarms.map((a) => h('p', null, h('strong', null, 'Alarm: '), a)));
}

async function loadVhosts() {
  try { W.vhosts = (await apiGet('/vhosts')).map((v) => v.name).sort(); } catch (e) { W.vhosts = []; }
  const sel = document.getElementById('vhost-filter');
  const cur = sessionStorage.getItem('warren.vhost') || '';
  replace(sel, h('option', { value: '' }, 'All'), W.vhosts.map((v) => h('option', { value: v, selected: v === cur }, v)));
  if (!W.vhosts.includes(cur)) sel.value = '';
}

function currentVhost() { return document.getElementById('vhost-filter').value; }

async function start() {
  const saved = JSON.parse(sessionStorage.getItem('warren.auth') || 'null');
  if (!saved) { loginPage(); return; }
  W.auth = saved.auth;
  W.user = { name: saved.name, tags: saved.tags };
  document.getElementById('top').hidden = false;
  document.getElementById('who').textContent = `User ${saved.name}${saved.tags.length ? ' (' + saved.tags.join(', ') + ')' : ''}`;
  try {
    const ov = await apiGet('/overview?columns=rabbitmq_version,product_version,product_name,cluster_name');
    document.getElementById('version').textContent = `${ov.product_name || 'warren'} ${ov.product_version || ''} (RabbitMQ ${ov.rabbitmq_version})`;
    document.getElementById('foot').textContent = `Cluster ${ov.cluster_name || ''}`;
  } catch (e) {
    if (e.status === 401) { logout(); return; }
  }
  await loadVhosts();
  startTimer();
  await navigate();
}

function init() {
  const refresh = document.getElementById('refresh');
  refresh.value = localStorage.getItem('warren.refresh') || '5';
  refresh.addEventListener('change', () => {
    localStorage.setItem('warren.refresh', refresh.value);
    startTimer();
  });
  document.getElementById('vhost-filter').addEventListener('change', (ev) => {
    sessionStorage.setItem('warren.vhost', ev.target.value);
    for (const k of Object.keys(W.lists)) W.lists[k].page = 1;
    navigate();
  });
  document.getElementById('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', navigate);
  start();
}

// ---- list views with the API's server-side paging ---------------------------------

// cols: [{label, sort (API field path), cell: (row) => node, num}]
// opts: {id, path: () => '/queues', pageSizes, filter (bool), empty, key: (row) => string}
function listView(opts) {
  const st = W.lists[opts.id] || (W.lists[opts.id] = {
    page: 1, page_size: opts.pageSize || 100, name: '', use_regex: false,
    sort: opts.sort || 'name', sort_reverse: false,
  });
  const summary = h('p', { class: 'summary', 'aria-live': 'polite', id: opts.id + '-summary' });
  const pager = h('div', { class: 'pager' });
  const tableBox = h('div', { class: 'table-box' });
  let timerId = null;
  const filterId = nextId('filter');
  const regexId = nextId('regex');
  const sizeId = nextId('size');
  const controls = h('div', { class: 'list-controls' },
    opts.filter === false ? null : [
      h('label', { for: filterId }, 'Filter'),
      h('input', { id: filterId, class: 'filter', type: 'search', value: st.name, 'data-list': opts.id,
        oninput: (ev) => {
          st.name = ev.target.value; st.page = 1;
          clearTimeout(timerId);
          timerId = setTimeout(load, 300);
        } }),
      h('label', { class: 'inline' }, h('input', { id: regexId, type: 'checkbox', checked: st.use_regex,
        onchange: (ev) => { st.use_regex = ev.target.checked; st.page = 1; load(); } }), ' Regex'),
    ],
    h('label', { for: sizeId }, 'Page size'),
    h('select', { id: sizeId, onchange: (ev) => { st.page_size = Number(ev.target.value); st.page = 1; load(); } },
      [20, 50, 100, 500].map((n) => h('option', { value: n, selected: n === st.page_size }, n))));
  // Summary and pager above the table, as in RabbitMQ: reachable without scrolling 500 rows.
  const el = h('div', { class: 'list' }, controls, h('div', { class: 'list-head' }, summary, pager), tableBox);

  function header() {
    return h('thead', null, h('tr', null, opts.cols.map((c) => {
      const sorted = c.sort && st.sort === c.sort;
      const aria = sorted ? (st.sort_reverse ? 'descending' : 'ascending') : null;
      const label = c.sort
        ? h('button', { type: 'button', class: 'sort', 'data-fk': 'sort:' + c.sort, onclick: () => {
          if (st.sort === c.sort) st.sort_reverse = !st.sort_reverse;
          else { st.sort = c.sort; st.sort_reverse = !!c.num; }
          load();
        } }, c.label, sorted ? (st.sort_reverse ? ' \u25BC' : ' \u25B2') : '')
        : c.label;
      return h('th', { scope: 'col', 'aria-sort': aria, class: c.num ? 'num' : null }, label);
    })));
  }

  let seq = 0;
  async function load() {
    // A refresh tick and a filter change may overlap: only the latest request paints.
    seq += 1;
    const mine = seq;
    const q = new URLSearchParams({
      page: st.page, page_size: st.page_size, sort: st.sort, sort_reverse: st.sort_reverse,
    });
    if (st.name) { q.set('name', st.name); q.set('use_regex', st.use_regex); }
    if (opts.columns) q.set('columns', opts.columns);
    let data;
    try {
      data = await apiGet(`${opts.path()}?${q}`);
    } catch (e) {
      if (mine !== seq) return undefined;
      if (e.status === 400 && st.page > 1 && /page_out_of_range|Page out of range/.test(e.message)) {
        st.page = 1;
        return load();
      }
      if (e.status === 400) { replace(summary, h('span', { class: 'error' }, e.message)); return; }
      throw e;
    }
    if (mine !== seq) return undefined;
    // Older answers (no paging support) are a plain array.
    if (Array.isArray(data)) data = { items: data, page: 1, page_count: 1, filtered_count: data.length, total_count: data.length };
    const rows = data.items.map((r) => h('tr', null, opts.cols.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(r)))));
    replace(tableBox, h('table', { class: 'list-table', id: opts.id + '-table' },
      header(), h('tbody', null, rows.length ? rows : h('tr', null, h('td', { colspan: opts.cols.length, class: 'muted' }, opts.empty || 'Nothing to show.')))));
    replace(summary, data.filtered_count === data.total_count
      ? `${fmtNum(data.total_count)} item${data.total_count === 1 ? '' : 's'}`
      : `${fmtNum(data.filtered_count)} of ${fmtNum(data.total_count)} items match`);
    const pages = Math.max(1, data.page_count || 1);
    const go = (p) => () => { st.page = p; load(); };
    replace(pager, pages <= 1 ? null : [
      button('First', go(1), { disabled: st.page <= 1, 'data-fk': 'pg:first' }),
      button('Previous', go(st.page - 1), { disabled: st.page <= 1, 'data-fk': 'pg:prev' }),
      h('label', null, 'Page ', h('select', { 'data-fk': 'pg:sel', 'aria-label': 'Page',
        onchange: (ev) => { st.page = Number(ev.target.value); load(); } },
      pageOptions(st.page, pages).map((p) => h('option', { value: p, selected: p === st.page }, p))), ` of ${fmtNum(pages)}`),
      button('Next', go(st.page + 1), { disabled: st.page >= pages, 'data-fk': 'pg:next' }),
      button('Last', go(pages), { disabled: st.page >= pages, 'data-fk': 'pg:last' }),
    ]);
  }
  return { el, refresh: load };
}

// A page selector with thousands of pages lists nearby pages and some landmarks only.
function pageOptions(cur, pages) {
  if (pages <= 200) return Array.from({ length: pages }, (_, i) => i + 1);
  const set = new Set([1, pages]);
  for (let p = Math.max(1, cur - 50); p <= Math.min(pages, cur + 50); p++) set.add(p);
  for (let p = 100; p < pages; p += 100) set.add(p);
  return [...set].sort((a, b) => a - b);
}

// A plain table for short lists (one object's bindings, consumers, permissions).
function simpleTable(cols, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty || 'Nothing to show.');
  return h('table', { class: 'list-table' },
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', null, rows.map((r) => h('tr', null, cols.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(r)))))));
}

// ---- forms -------------------------------------------------------------------------

// fields: [{name, label, type ('text'|'password'|'number'|'select'|'textarea'|'checkbox'),
//           options: [[value, label]], value, required, hint}]
function form(id, fields, submitLabel, onsubmit, extra) {
  const f = h('form', { id, class: 'form' });
  for (const fd of fields) {
    const fid = `${id}-${fd.name}`;
    let input;
    if (fd.type === 'select') {
      input = h('select', { id: fid, name: fd.name },
        fd.options.map(([v, l]) => h('option', { value: v, selected: String(v) === String(fd.value) }, l)));
    } else if (fd.type === 'textarea') {
      input = h('textarea', { id: fid, name: fd.name, rows: fd.rows || 4, required: fd.required }, fd.value || '');
    } else if (fd.type === 'checkbox') {
      input = h('input', { id: fid, name: fd.name, type: 'checkbox', checked: fd.value });
    } else {
      input = h('input', { id: fid, name: fd.name, type: fd.type || 'text', value: fd.value === undefined ? '' : fd.value,
        required: fd.required, autocomplete: fd.type === 'password' ? 'new-password' : 'off', placeholder: fd.placeholder });
    }
    f.append(h('div', { class: 'row', 'data-field': fd.name }, h('label', { for: fid }, fd.label), input,
      fd.hint ? h('span', { class: 'hint' }, fd.hint) : null));
  }
  if (extra) f.append(...[].concat(extra));
  const submit = h('button', { type: 'submit', id: `${id}-submit` }, submitLabel);
  f.append(h('div', { class: 'row' }, h('span'), submit));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const fd of fields) {
      const el = f.elements[fd.name];
      values[fd.name] = fd.type === 'checkbox' ? el.checked : el.value;
    }
    submit.disabled = true;
    try { await onsubmit(values, f); } catch (e) { failed(e); } finally { submit.disabled = false; }
  });
  return f;
}

function vhostOptions() {
  return (W.vhosts.length ? W.vhosts : ['/']).map((v) => [v, v]);
}

function defaultVhost() { return currentVhost() || (W.vhosts.includes('/') ? '/' : W.vhosts[0] || '/'); }

// Arguments and headers as rows of key, value and type; helpers add a row for a known key.
function kvEditor(id, legend, helpers) {
  const rows = h('div', { class: 'kv-rows' });
  let n = 0;
  function addRow(key, type, value) {
    n += 1;
    const kid = `${id}-k${n}`;
    const row = h('div', { class: 'kv-row' },
      h('label', { for: kid, class: 'sr' }, 'Key'),
      h('input', { id: kid, class: 'kv-key', placeholder: 'key', value: key || '' }),
      h('label', { for: kid + 'v', class: 'sr' }, 'Value'),
      h('input', { id: kid + 'v', class: 'kv-value', placeholder: 'value', value: value === undefined ? '' : value }),
      h('label', { for: kid + 't', class: 'sr' }, 'Type'),
      h('select', { id: kid + 't', class: 'kv-type' }, [['string', 'String'], ['number', 'Number'], ['boolean', 'Boolean'], ['list', 'List (JSON)']]
        .map(([v, l]) => h('option', { value: v, selected: v === (type || 'string') }, l))),
      button('Remove', () => row.remove(), { class: 'link', 'aria-label': 'Remove this row' }));
    rows.append(row);
    return row;
  }
  addRow();
  const helperBox = helpers && helpers.length ? h('p', { class: 'helpers' }, 'Add ',
    helpers.map(([key, type, label, value]) => [button(label || key, () => {
      const empty = [...rows.querySelectorAll('.kv-row')].find((r) => !r.querySelector('.kv-key').value);
      const row = empty || addRow();
      row.querySelector('.kv-key').value = key;
      row.querySelector('.kv-type').value = type || 'string';
      if (value !== undefined) row.querySelector('.kv-value').value = value;
      row.querySelector('.kv-value').focus();
    }, { class: 'chip', title: key }), ' '])) : null;
  const el = h('fieldset', { class: 'kv-editor', id }, h('legend', null, legend), rows,
    button('Add row', () => addRow().querySelector('.kv-key').focus(), { class: 'link' }), helperBox);
  function value() {
    const out = {};
    for (const r of rows.querySelectorAll('.kv-row')) {
      const k = r.querySelector('.kv-key').value.trim();
      if (!k) continue;
      const raw = r.querySelector('.kv-value').value;
      const t = r.querySelector('.kv-type').value;
      if (t === 'number') {
        const num = Number(raw);
        if (raw.trim() === '' || Number.isNaN(num)) throw new Error(`${k}: not a number`);
        out[k] = num;
      } else if (t === 'boolean') out[k] = /^(true|yes|1)$/i.test(raw.trim());
      else if (t === 'list') {
        try { out[k] = JSON.parse(raw); } catch (e) { throw new Error(`${k}: not JSON`); }
      } else out[k] = raw;
    }
    return out;
  }
  function clear() { rows.replaceChildren(); addRow(); }
  return { el, value, clear, addRow };
}

// ---- charts ------------------------------------------------------------------------

const COLORS = ['#2a6fdb', '#d9822b', '#3d9a50', '#b8336a', '#7e57c2', '#6d6d6d'];
const KEEP = 120;

// Records one sample of series values under key (a page's object), for a chart over time;
// the API answers current rates only, so the history is what this page has seen.
function sample(key, values) {
  const list = W.history[key] || (W.history[key] = []);
  list.push({ t: Date.now(), v: values });
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
  return list;
}

// series: [[field, label]], fmt: value formatter.
function chart(title, key, series, fmt) {
  const list = W.history[key] || [];
  const wdt = 600; const ht = 170; const pad = { l: 56, r: 8, t: 10, b: 22 };
  let max = 0;
  for (const p of list) for (const [f] of series) max = Math.max(max, p.v[f] || 0);
  max = niceMax(max);
  const t1 = list.length ? list[list.length - 1].t : Date.now();
  const span = Math.max(60000, list.length ? t1 - list[0].t : 0);
  const x = (t) => pad.l + (wdt - pad.l - pad.r) * (1 - (t1 - t) / span);
  const y = (v) => ht - pad.b - (ht - pad.t - pad.b) * (max ? v / max : 0);
  const g = s('svg', { viewBox: `0 0 ${wdt} ${ht}`, class: 'chart', role: 'img', 'aria-label': `${title} chart` });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    g.append(s('line', { x1: pad.l, x2: wdt - pad.r, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, fmt(v)));
  }
  g.append(s('text', { x: pad.l, y: ht - 4, class: 'axis' }, `${Math.round(span / 60000)} min ago`),
    s('text', { x: wdt - pad.r, y: ht - 4, 'text-anchor': 'end', class: 'axis' }, 'now'));
  series.forEach(([f], i) => {
    const pts = list.filter((p) => typeof p.v[f] === 'number').map((p) => `${x(p.t).toFixed(1)},${y(p.v[f]).toFixed(1)}`);
    if (pts.length === 1) g.append(s('circle', { cx: pts[0].split(',')[0], cy: pts[0].split(',')[1], r: 3, fill: COLORS[i % COLORS.length] }));
    else if (pts.length) g.append(s('polyline', { points: pts.join(' '), fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2 }));
  });
  const last = list.length ? list[list.length - 1].v : {};
  const legend = h('ul', { class: 'legend' }, series.map(([f, label], i) => h('li', null,
    h('span', { class: 'swatch c' + (i % COLORS.length) }), `${label} `, h('strong', { 'data-series': f }, fmt(last[f] || 0)))));
  return h('figure', { class: 'chart-box' }, h('figcaption', null, title), g, legend);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// Rates of the message_stats fields as a sample.
function rateSample(stats, fields) {
  const out = {};
  for (const f of fields) out[f] = get(stats || {}, `${f}_details.rate`) || 0;
  return out;
}

// ---- downloads ---------------------------------------------------------------------

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || 'application/json' }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
}

function confirmAction(text) { return window.confirm(text); }

document.addEventListener('DOMContentLoaded', () => setTimeout(init, 0));
