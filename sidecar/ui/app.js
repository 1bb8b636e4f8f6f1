/*
 * agentstate inspector: the static front end served at /ui.
 * Hand-written, no build step, no dependencies. Loaded as a classic deferred script.
 *
 * Every string from the server is untrusted: it only ever reaches the page through
 * textContent / createTextNode / setAttribute (safe attributes) / .value, by way of el().
 *
 * Test hooks (stable `id`s; the same value is also set as `data-testid`):
 *   Header     nav-agents nav-threads nav-transfers nav-status nav-usage (data-testid on the nav links)
 *              #live-toggle (aria-pressed="true" while live refresh runs) #live-state
 *              #token-form #token-input #token-submit #token-error
 *              #writes-note #notice #app-version
 *   Lists      #page-first #page-prev #page-next #page-number   (agents, threads, transfers)
 *              [data-testid=error] (any error box), [data-testid=empty] (empty result)
 *   Agents     #agents-filter #f-prefix #f-state #f-type #f-updated-after #f-failed #f-apply #f-clear
 *              #agents-table, rows [data-testid=agent-row][data-agent-id], [data-testid=agent-link],
 *              [data-testid=pending-badge]
 *   Agent      #agent-summary #summary-state #summary-version #summary-type #summary-updated
 *              #pending-transition #abort-button
 *              #checkpoints-table, rows [data-testid=checkpoint-row][data-checkpoint-id],
 *              [data-testid=rollback-button][data-checkpoint-id], [data-testid=compare-button][data-checkpoint-id]
 *              #diff-a #diff-b #diff-output #diff-table #diff-empty, rows [data-testid=diff-row][data-op][data-path]
 *              #view-compact #view-detailed #view-raw (radios) #timeline-kind #timeline #timeline-list
 *              entries [data-testid=timeline-entry][data-kind=transition|message|checkpoint|transfer]
 *                      [data-failed=true] [data-rollback=true] [data-direction=in|out]
 *              #timeline-raw #timeline-more
 *   Threads    #threads-filter #threads-prefix #threads-apply #threads-table [data-testid=thread-link]
 *   Thread     #thread-ns-form #thread-ns #checkpoint-tree, nodes [data-testid=checkpoint-node][data-checkpoint-id]
 *              [data-fork=true] [aria-current=true]; #checkpoint-view #checkpoint-metadata
 *              #channels-table rows [data-testid=channel-row][data-channel]; #writes-table #fork-button
 *   Transfers  #transfers-filter #transfers-agent #transfers-apply #transfers-table
 *              rows [data-testid=transfer-row][data-transfer-id]
 *   Durability #status-panel #status-ready #status-backend #status-backend-reachable #status-wal-last-lsn
 *              #status-flushed-lsn #status-unflushed #status-wal-segments #status-wal-bytes
 *              #status-backlog-agents #status-backlog #status-backlog-meter #status-backlog-oldest
 *              #status-last-flush #status-flush-error #status-cache-entries #status-cache-bytes #status-leases
 *              #status-extra
 *   Usage      #usage-form #usage-top #usage-backend #usage-tables #usage-largest
 *   Dialog     #confirm-dialog[data-action=rollback|abort|fork] #dialog-title #dialog-preview
 *              #reason-input #confirm-button #cancel-button #dialog-error
 */
(function () {
  'use strict';

  const POLL_MS = 2000;
  const USAGE_POLL_MS = 10000; // usage scans the store: refreshed less often
  const HISTORY_LIMIT = 200;
  const DIFF_MAX_ROWS = 500;

  // ───────────────────────────── api ─────────────────────────────

  let bearer = null; // the bearer token: kept in this variable only
  let uiWrites = false;

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const enc = encodeURIComponent;

  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === '') continue;
      u.set(k, String(v));
    }
    const s = u.toString();
    return s ? '?' + s : '';
  }

  async function api(path, opts) {
    opts = opts || {};
    if (!path.startsWith('/v1/')) throw new Error('api paths are same-origin /v1/ paths');
    const headers = { Accept: 'application/json' };
    const sentToken = bearer;
    if (sentToken) headers.Authorization = 'Bearer ' + sentToken;
    const init = {
      method: opts.method || 'GET', headers, credentials: 'omit', cache: 'no-store',
      mode: 'same-origin', redirect: 'error',
    };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await fetch(path + qs(opts.query), init);
    } catch (e) {
      throw new ApiError(0, 'network', 'The sidecar could not be reached (' + e.message + ').');
    }
    const body = await res.text();
    let data;
    try { data = body ? JSON.parse(body) : null; } catch (_) { data = undefined; }
    if (!res.ok) {
      const err = data && typeof data.error === 'object' && data.error ? data.error : {};
      const code = typeof err.code === 'string' ? err.code : 'http_' + res.status;
      const message = typeof err.message === 'string' ? err.message : (res.statusText || 'HTTP ' + res.status);
      if (res.status === 401 && bearer === sentToken) needToken(message); // not for a token since replaced
      throw new ApiError(res.status, code, message);
    }
    if (data === undefined) throw new ApiError(res.status, 'bad_response', 'The answer was not JSON.');
    return data;
  }

  const API = {
    inspector: () => api('/v1/inspector'),
    agents: (q) => api('/v1/agents', { query: q }),
    agent: (id) => api('/v1/agents/' + enc(id)),
    timeline: (id, q) => api('/v1/agents/' + enc(id) + '/timeline', { query: q }),
    checkpoints: (id) => api('/v1/agents/' + enc(id) + '/checkpoints'),
    threads: (q) => api('/v1/threads', { query: q }),
    threadHistory: (id, q) => api('/v1/threads/' + enc(id) + '/history', { query: q }),
    threadView: (id, q) => api('/v1/threads/' + enc(id) + '/view', { query: q }),
    transfers: (q) => api('/v1/transfers', { query: q }),
    status: () => api('/v1/status'),
    usage: (q) => api('/v1/usage', { query: q }),
    rollback: (id, checkpointId, reason) => api('/v1/inspector/agents/' + enc(id) + '/rollback',
      { method: 'POST', body: { checkpoint_id: checkpointId, reason } }),
    abort: (id, tid, reason) => api('/v1/inspector/agents/' + enc(id) + '/transitions/' + enc(tid) + '/abort',
      { method: 'POST', body: { reason } }),
    fork: (id, ns, checkpointId, reason) => api('/v1/inspector/threads/' + enc(id) + '/fork',
      { method: 'POST', body: { checkpoint_ns: ns, checkpoint_id: checkpointId, reason } }),
  };

  let tokenRefused = false;

  function needToken(message) {
    const form = $('#token-form');
    const wasHidden = form.hidden;
    form.hidden = false;
    if (bearer) tokenRefused = true;
    $('#token-error').textContent = tokenRefused
      ? 'The token was refused (' + message + '). Enter another.'
      : 'This sidecar asks for a bearer token (' + message + ').';
    bearer = null;
    if (wasHidden) $('#token-input').focus();
  }

  async function loadInspector() {
    const note = $('#writes-note');
    try {
      const info = await API.inspector();
      uiWrites = info && info.ui_writes === true;
      $('#app-version').textContent = info && info.version != null ? 'agentstate ' + String(info.version) : '';
      note.textContent = 'Read-only: this sidecar was started without --ui-writes, so rollback, abort and fork are not offered.';
    } catch (e) {
      uiWrites = false;
      note.textContent = 'Read-only: the inspector settings could not be read (' + e.message + ').';
    }
    note.hidden = uiWrites;
  }

  // ───────────────────────────── dom helpers ─────────────────────────────

  const $ = (sel, root) => (root || document).querySelector(sel);
  const BOOL_PROPS = new Set(['hidden', 'disabled', 'checked', 'selected', 'open', 'required', 'multiple']);

  /** el(tag, attrs, ...children): the only way nodes are built. Children: nodes, strings, numbers, arrays, null. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'value') node.value = String(v);
      else if (BOOL_PROPS.has(k)) node[k] = Boolean(v);
      else if (k.startsWith('on')) {
        if (typeof v !== 'function') throw new Error('event handlers must be functions');
        node.addEventListener(k.slice(2), v);
      } else if (k === 'style' || k === 'src' || k === 'srcdoc' || k === 'action' || k === 'formaction') {
        throw new Error('attribute not allowed: ' + k);
      } else if (k === 'href') {
        if (typeof v !== 'string' || v[0] !== '#') throw new Error('only in-page links');
        node.setAttribute('href', v);
      } else node.setAttribute(k, String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(node, c);
      else if (c instanceof Node) node.appendChild(c);
      else node.appendChild(document.createTextNode(String(c)));
    }
  }

  /** A test hook: the same value as id and data-testid. */
  const tid = (name) => ({ id: name, 'data-testid': name });

  /** Replace a region's content keeping focus and <details> open state (matched by data-key). */
  function swap(container, ...children) {
    const active = document.activeElement;
    const focusKey = active && active !== container && container.contains(active) ? active.getAttribute('data-key') : null;
    const openState = new Map();
    container.querySelectorAll('details[data-key]').forEach((d) => openState.set(d.getAttribute('data-key'), d.open));
    container.replaceChildren();
    append(container, children);
    if (openState.size) {
      container.querySelectorAll('details[data-key]').forEach((d) => {
        const k = d.getAttribute('data-key');
        if (openState.has(k)) d.open = openState.get(k);
      });
    }
    if (focusKey) {
      const target = Array.from(container.querySelectorAll('[data-key]')).find((n) => n.getAttribute('data-key') === focusKey);
      if (target) target.focus({ preventScroll: true });
    }
  }

  function jsonText(v) {
    if (v === undefined) return 'undefined';
    try { return JSON.stringify(v, null, 2); } catch (_) { return String(v); }
  }
  function shortJson(v, max) {
    let s;
    if (v === undefined) s = '(absent)';
    else { try { s = JSON.stringify(v); } catch (_) { s = String(v); } }
    return truncate(s, max || 300);
  }
  function truncate(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }
  const pre = (v, attrs) => el('pre', Object.assign({ class: 'json' }, attrs), jsonText(v));

  function fmtTime(s) {
    const d = new Date(s);
    return s == null || isNaN(d.getTime()) ? String(s == null ? '—' : s) : d.toLocaleString();
  }
  const time = (s) => (s == null ? '—' : el('time', { datetime: String(s), title: String(s) }, fmtTime(s)));

  function fmtBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return n == null ? '—' : String(n);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0; let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(v < 10 ? 2 : 1) : String(v)) + ' ' + units[i];
  }
  const bytes = (n) => el('span', { title: n == null ? null : String(n) + ' bytes' }, fmtBytes(n));

  function fmtMs(ms) {
    if (typeof ms !== 'number') return ms == null ? '—' : String(ms);
    if (ms < 1000) return ms + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + ' s';
    if (s < 3600) return (s / 60).toFixed(1) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  const scalar = (v) => (v === undefined ? '—' : v === null ? 'null' : typeof v === 'object' ? shortJson(v) : String(v));
  const badge = (text, cls, attrs) => el('span', Object.assign({ class: 'badge ' + (cls || '') }, attrs), text);
  const code = (text) => el('code', { class: 'id' }, text == null ? '—' : String(text));
  const agentLink = (id, key) => el('a', { href: '#/agent/' + enc(id), class: 'id', 'data-testid': 'agent-link', 'data-key': key || null }, String(id));

  function errorBox(err) {
    const codeText = err && err.code ? err.code : 'error';
    return el('div', { class: 'error', role: 'alert', 'data-testid': 'error' },
      el('strong', {}, codeText + ': '), err && err.message ? err.message : String(err));
  }

  /** <dl> of [label, value, attrs-for-dd] rows; rows with value undefined are skipped. */
  function dlist(rows, cls) {
    const d = el('dl', { class: cls || 'kv' });
    for (const [label, value, ddAttrs] of rows) {
      if (value === undefined) continue;
      d.appendChild(el('div', {}, el('dt', {}, label), el('dd', ddAttrs || {}, value instanceof Node ? value : scalar(value))));
    }
    return d;
  }

  /** Any JSON value as nested key/value lists (objects up to depth 2), else pretty JSON. */
  function generic(v, depth) {
    depth = depth || 0;
    if (v === null || typeof v !== 'object') return document.createTextNode(scalar(v));
    if (Array.isArray(v) || depth >= 2) return pre(v);
    const d = el('dl', { class: 'kv nested' });
    for (const [k, x] of Object.entries(v)) d.appendChild(el('div', {}, el('dt', {}, k), el('dd', {}, generic(x, depth + 1))));
    return d;
  }

  function table(attrs, caption, headers, rows) {
    return el('table', attrs,
      el('caption', {}, caption),
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
  }

  function collapsible(summary, body, key, open) {
    return el('details', { 'data-key': key, open: !!open }, el('summary', {}, summary), body);
  }

  function notice(text) {
    const n = $('#notice');
    n.textContent = text || '';
    n.hidden = !text;
  }

  function field(label, input) {
    return el('div', { class: 'field' }, el('label', { for: input.id }, label), input);
  }

  // ───────────────────────────── router ─────────────────────────────

  function parseHash() {
    let h = location.hash.replace(/^#/, '');
    if (!h.startsWith('/')) h = '/agents';
    const qi = h.indexOf('?');
    const path = qi >= 0 ? h.slice(0, qi) : h;
    const params = new URLSearchParams(qi >= 0 ? h.slice(qi + 1) : '');
    const segs = path.split('/').slice(1).map((s) => { try { return decodeURIComponent(s); } catch (_) { return s; } });
    return { route: segs[0] || 'agents', id: segs.length > 1 && segs[1] !== '' ? segs[1] : null, params };
  }

  function hashFor(route, id, params) {
    let h = '#/' + route;
    if (id != null) h += '/' + enc(id);
    const s = params ? new URLSearchParams(params).toString() : '';
    return s ? h + '?' + s : h;
  }

  function go(route, id, params, replace) {
    const h = hashFor(route, id, params);
    if (replace) { history.replaceState(null, '', h); render(); return; }
    const before = location.hash;
    location.hash = h;
    if (location.hash === before) render(); // same page again: no hashchange fires
  }

  /** Change some hash parameters of the current page (null deletes). */
  function patchHash(changes, replace) {
    const r = parseHash();
    const p = new URLSearchParams(r.params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === undefined || v === '') p.delete(k); else p.set(k, String(v));
    }
    go(r.route, r.id, p, replace);
  }

  const ROUTES = {
    agents: () => AgentsView(), agent: (id) => AgentView(id),
    threads: () => ThreadsView(), thread: (id) => ThreadView(id),
    transfers: () => TransfersView(), status: () => StatusView(), usage: () => UsageView(),
  };
  const NAV_OF = { agents: 'agents', agent: 'agents', threads: 'threads', thread: 'threads', transfers: 'transfers', status: 'status', usage: 'usage' };

  let current = null; // { key, view }
  let firstRender = true;

  function render() {
    const r = parseHash();
    if (!ROUTES[r.route]) { go('agents', null, null, true); return; }
    if ((r.route === 'agent' || r.route === 'thread') && r.id == null) { go(r.route + 's', null, null, true); return; }
    document.querySelectorAll('nav.main a').forEach((a) => {
      if (a.getAttribute('data-nav') === NAV_OF[r.route]) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    const key = r.route + '/' + (r.id == null ? '' : r.id);
    if (!current || current.key !== key) {
      notice('');
      const view = ROUTES[r.route](r.id);
      current = { key, view };
      $('#view').replaceChildren(view.root);
      document.title = view.title + ' · agentstate inspector';
      if (!firstRender) { const h = $('h1', view.root); if (h) h.focus(); }
      schedulePoll();
    }
    firstRender = false;
    current.view.update(r.params).catch(() => {});
  }

  // Live refresh: re-poll the current view without rebuilding its controls.
  let live = true;
  let pollTimer = null;
  let polling = false;

  function schedulePoll() {
    clearTimeout(pollTimer);
    if (!live) return;
    const ms = (current && current.view.pollMs) || POLL_MS;
    pollTimer = setTimeout(tick, ms);
  }

  async function tick() {
    if (!live) return;
    const quiet = document.hidden || $('#confirm-dialog').open || !$('#token-form').hidden;
    if (!quiet && !polling && current && current.view.refresh) {
      polling = true;
      try { await current.view.refresh(); } catch (_) { /* shown by the view */ } finally { polling = false; }
    }
    schedulePoll();
  }

  function setLive(on, now) {
    live = on;
    const b = $('#live-toggle');
    b.setAttribute('aria-pressed', String(on));
    b.textContent = on ? 'Pause' : 'Resume';
    $('#live-state').textContent = on ? 'Live: every 2 s' : 'Paused';
    if (on && now) tick(); else if (on) schedulePoll(); else clearTimeout(pollTimer);
  }

  // ───────────────────────────── dialog (writes) ─────────────────────────────

  let dialogRun = null;
  let dialogOpener = null;
  let dialogBusy = false;

  /** Preview, required reason, explicit confirm. run(reason) -> message for the notice. */
  function confirmAction(action, title, previewNodes, confirmLabel, run) {
    const dlg = $('#confirm-dialog');
    dlg.setAttribute('data-action', action);
    $('#dialog-title').textContent = title;
    swap($('#dialog-preview'), previewNodes);
    const reason = $('#reason-input');
    reason.value = '';
    $('#confirm-button').textContent = confirmLabel;
    $('#confirm-button').disabled = true;
    $('#dialog-error').hidden = true;
    dialogRun = run;
    dialogBusy = false;
    const a = document.activeElement;
    dialogOpener = a ? { node: a, key: a.getAttribute('data-key'), id: a.id } : null;
    dlg.showModal();
    reason.focus();
  }

  function wireDialog() {
    const dlg = $('#confirm-dialog');
    const reason = $('#reason-input');
    const confirm = $('#confirm-button');
    const sync = () => { confirm.disabled = dialogBusy || reason.value.trim() === ''; };
    reason.addEventListener('input', sync);
    $('#cancel-button').addEventListener('click', () => dlg.close());
    confirm.addEventListener('click', async () => {
      const why = reason.value.trim();
      if (!why || !dialogRun || dialogBusy) return;
      dialogBusy = true; sync();
      try {
        const msg = await dialogRun(why);
        dialogBusy = false;
        dlg.close();
        notice(msg);
        if (current && current.view.refresh) await current.view.refresh();
      } catch (e) {
        dialogBusy = false; sync();
        const err = $('#dialog-error');
        err.hidden = false;
        err.textContent = (e.code || 'error') + ': ' + e.message;
      }
    });
    dlg.addEventListener('close', () => {
      dialogRun = null;
      const o = dialogOpener; dialogOpener = null;
      if (!o) return;
      let target = o.node.isConnected ? o.node : null;
      if (!target && o.id) target = document.getElementById(o.id);
      if (!target && o.key) target = Array.from(document.querySelectorAll('[data-key]')).find((n) => n.getAttribute('data-key') === o.key);
      if (!target || target.disabled) target = $('#view h1');
      if (target) target.focus();
    });
  }

  // ───────────────────────────── views: shared list view ─────────────────────────────

  /** Make a pager over a cursor stack kept in the hash as repeated `c` parameters. */
  function makePager(onNav) {
    const first = el('button', Object.assign({ type: 'button' }, tid('page-first')), 'First page');
    const prev = el('button', Object.assign({ type: 'button' }, tid('page-prev')), 'Previous page');
    const next = el('button', Object.assign({ type: 'button' }, tid('page-next')), 'Next page');
    const label = el('span', Object.assign({ class: 'page-number', 'aria-live': 'polite' }, tid('page-number')), 'Page 1');
    let stack = []; let nextCursor = null;
    first.addEventListener('click', () => onNav([]));
    prev.addEventListener('click', () => onNav(stack.slice(0, -1)));
    next.addEventListener('click', () => { if (nextCursor) onNav(stack.concat([nextCursor])); });
    return {
      root: el('nav', { class: 'pager', 'aria-label': 'Pages' }, first, prev, label, next),
      set(s, nc) {
        const focused = document.activeElement;
        stack = s; nextCursor = nc || null;
        first.disabled = prev.disabled = stack.length === 0;
        next.disabled = !nextCursor;
        label.textContent = 'Page ' + (stack.length + 1);
        if (focused && focused.disabled && (focused === first || focused === prev || focused === next)) {
          const alt = [next, prev, first].find((b) => !b.disabled);
          if (alt) alt.focus();
          else { label.setAttribute('tabindex', '-1'); label.focus(); }
        }
      },
    };
  }

  /**
   * A filtered, cursor-paged list.
   * fields: [{ key, id, label, type: 'text'|'checkbox'|'datetime', placeholder }]
   * query(params) -> API query; fetch(q) -> page; itemsKey; renderItems(items, params, page) -> node
   */
  function ListView(o) {
    const heading = el('h1', { tabindex: '-1' }, o.title);
    const inputs = {};
    const form = el('form', Object.assign({ class: 'filters', role: 'search', 'aria-label': o.title + ' filters' }, tid(o.formId)));
    for (const f of o.fields) {
      let input;
      if (f.type === 'checkbox') {
        input = el('input', Object.assign({ type: 'checkbox' }, tid(f.id)));
        form.appendChild(el('div', { class: 'field check' }, input, el('label', { for: f.id }, f.label)));
      } else {
        input = el('input', Object.assign({
          type: f.type === 'datetime' ? 'datetime-local' : 'text', placeholder: f.placeholder || null,
          autocomplete: 'off', spellcheck: 'false',
        }, tid(f.id)));
        form.appendChild(field(f.label, input));
      }
      inputs[f.key] = { f, input };
    }
    const clear = el('button', Object.assign({ type: 'button', class: 'secondary' }, tid(o.clearId || o.formId + '-clear')), 'Clear');
    form.appendChild(el('div', { class: 'field buttons' },
      el('button', Object.assign({ type: 'submit' }, tid(o.applyId || o.formId + '-apply')), 'Apply'), clear));

    const errSlot = el('div', { class: 'error-slot' });
    const content = el('div', { class: 'content' });
    let params = new URLSearchParams();
    let stack = [];
    let seq = 0;
    let lastSig = null;

    const pager = makePager((newStack) => {
      const p = new URLSearchParams(params);
      p.delete('c');
      for (const c of newStack) p.append('c', c);
      go(o.route, null, p, false);
    });

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      for (const { f, input } of Object.values(inputs)) {
        if (f.type === 'checkbox') { if (input.checked) p.set(f.key, '1'); }
        else if (f.type === 'datetime') { const v = localToRfc3339(input.value); if (v) p.set(f.key, v); }
        else if (input.value.trim()) p.set(f.key, input.value.trim());
      }
      if (params.get('limit')) p.set('limit', params.get('limit'));
      go(o.route, null, p, false); // a new filter starts at the first page
    });
    clear.addEventListener('click', () => go(o.route, null, null, false));

    async function load(isRefresh) {
      const gen = ++seq;
      const q = o.query(params);
      q.limit = params.get('limit') || undefined;
      q.cursor = stack.length ? stack[stack.length - 1] : undefined;
      try {
        const data = await o.fetch(q);
        if (gen !== seq) return;
        errSlot.replaceChildren();
        const sig = JSON.stringify(data);
        if (sig === lastSig) return;
        lastSig = sig;
        const items = data && Array.isArray(data[o.itemsKey]) ? data[o.itemsKey] : [];
        swap(content, o.renderItems(items, params, stack.length + 1));
        pager.set(stack, data ? data.next_cursor : null);
      } catch (e) {
        if (gen !== seq) return;
        swap(errSlot, errorBox(e));
        if (!isRefresh) { content.replaceChildren(); lastSig = null; pager.set(stack, null); }
      }
    }

    return {
      title: o.title,
      filterId: o.fields[0].id,
      root: el('section', { class: 'view' }, heading, o.intro ? el('p', { class: 'intro' }, o.intro) : null, form, errSlot, content, pager.root),
      async update(p) {
        params = p;
        stack = p.getAll('c');
        for (const { f, input } of Object.values(inputs)) {
          const v = p.get(f.key);
          if (f.type === 'checkbox') input.checked = v === '1' || v === 'true';
          else if (f.type === 'datetime') input.value = v ? rfc3339ToLocal(v) : '';
          else input.value = v || '';
        }
        lastSig = null;
        await load(false);
      },
      refresh: () => load(true),
    };
  }

  function localToRfc3339(v) {
    if (!v) return '';
    const d = new Date(v); // datetime-local values carry no offset: read as local time
    return isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.000Z$/, 'Z');
  }
  function rfc3339ToLocal(s) {
    const d = new Date(s);
    if (isNaN(d.getTime())) return '';
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) +
      (d.getSeconds() ? ':' + p(d.getSeconds()) : '');
  }

  // ───────────────────────────── views: agents ─────────────────────────────

  function AgentsView() {
    return ListView({
      title: 'Agents', route: 'agents', formId: 'agents-filter', applyId: 'f-apply', clearId: 'f-clear', itemsKey: 'agents',
      fields: [
        { key: 'prefix', id: 'f-prefix', label: 'Id prefix', placeholder: 'e.g. greet' },
        { key: 'state', id: 'f-state', label: 'State' },
        { key: 'type', id: 'f-type', label: 'Type' },
        { key: 'updated_after', id: 'f-updated-after', label: 'Updated after (local time)', type: 'datetime' },
        { key: 'failed', id: 'f-failed', label: 'Failed transitions only', type: 'checkbox' },
      ],
      query: (p) => ({
        prefix: p.get('prefix'), state: p.get('state'), type: p.get('type'),
        updated_after: p.get('updated_after'), failed: p.get('failed') === '1' ? 'true' : undefined,
      }),
      fetch: API.agents,
      renderItems(items, _p, page) {
        if (!items.length) return el('p', { class: 'empty', 'data-testid': 'empty' }, 'No agents match.');
        return table(Object.assign({ class: 'list' }, tid('agents-table')),
          'Agents, page ' + page + ' (' + items.length + ' shown)',
          ['Agent id', 'Type', 'State', 'Version', 'Updated', 'Pending'],
          items.map((a) => el('tr', { 'data-testid': 'agent-row', 'data-agent-id': a.agent_id },
            el('th', { scope: 'row' }, agentLink(a.agent_id, 'agent-' + a.agent_id)),
            el('td', {}, a.agent_type == null ? '—' : a.agent_type),
            el('td', {}, code(a.state_name)),
            el('td', { class: 'num' }, scalar(a.version)),
            el('td', {}, time(a.updated_at)),
            el('td', {}, a.pending ? badge('pending', 'pending', { 'data-testid': 'pending-badge' }) : ''))));
      },
    });
  }

  // ───────────────────────────── views: agent ─────────────────────────────

  const KINDS = [['all', 'All entries'], ['transition', 'Transitions'], ['failed', 'Refused transitions'],
    ['rollback', 'Rollbacks and replays'], ['message', 'Messages'], ['checkpoint', 'Checkpoints'], ['transfer', 'Transfers']];
  const isRollback = (t) => t && (t.trigger === 'rollback' || t.trigger === 'replay');

  function AgentView(id) {
    const heading = el('h1', { tabindex: '-1' }, 'Agent ', el('span', { class: 'id' }, id));
    const errSlot = el('div', { class: 'error-slot' });
    const summaryBody = el('div', {});
    const cpBody = el('div', {});
    const diffA = el('select', tid('diff-a'));
    const diffB = el('select', tid('diff-b'));
    const diffOut = el('div', Object.assign({ 'aria-live': 'polite' }, tid('diff-output')));
    const viewRadios = ['compact', 'detailed', 'raw'].map((v) =>
      el('input', Object.assign({ type: 'radio', name: 'timeline-view', value: v }, tid('view-' + v))));
    const kindSel = el('select', tid('timeline-kind'), KINDS.map(([v, l]) => el('option', { value: v }, l)));
    const tlBody = el('div', tid('timeline'));
    const more = el('button', Object.assign({ type: 'button', hidden: true }, tid('timeline-more')), 'Load more');

    let params = new URLSearchParams();
    let agent = null; let checkpoints = []; let pages = []; // pages: [{ cursor, entries, next }]
    let loaded = false; let seq = 0; let loadingMore = false;
    const sigs = {};

    viewRadios.forEach((r) => r.addEventListener('change', () => { if (r.checked) patchHash({ view: r.value === 'compact' ? null : r.value }, true); }));
    kindSel.addEventListener('change', () => patchHash({ kind: kindSel.value === 'all' ? null : kindSel.value }, true));
    diffA.addEventListener('change', () => patchHash({ a: diffA.value }, true));
    diffB.addEventListener('change', () => patchHash({ b: diffB.value }, true));
    more.addEventListener('click', loadMore);

    const root = el('section', { class: 'view' }, heading, errSlot,
      el('section', Object.assign({ class: 'panel', 'aria-labelledby': 'summary-h' }, tid('agent-summary')),
        el('h2', { id: 'summary-h' }, 'Current state'), summaryBody),
      el('section', { class: 'panel', 'aria-labelledby': 'cp-h' }, el('h2', { id: 'cp-h' }, 'Checkpoints'), cpBody),
      el('section', { class: 'panel', 'aria-labelledby': 'diff-h' }, el('h2', { id: 'diff-h' }, 'Compare states'),
        el('div', { class: 'filters' }, field('State A', diffA), field('State B', diffB)), diffOut),
      el('section', { class: 'panel', 'aria-labelledby': 'tl-h' }, el('h2', { id: 'tl-h' }, 'Timeline'),
        el('div', { class: 'filters' },
          el('fieldset', { class: 'switch' }, el('legend', {}, 'View'),
            viewRadios.map((r) => el('span', { class: 'radio' }, r, el('label', { for: r.id }, r.value[0].toUpperCase() + r.value.slice(1))))),
          field('Show', kindSel)),
        tlBody, more));

    async function loadAll(isRefresh) {
      const gen = ++seq;
      const last = pages.length ? pages[pages.length - 1] : null;
      try {
        const [a, cps, page] = await Promise.all([
          API.agent(id), API.checkpoints(id), API.timeline(id, { cursor: last ? last.cursor : undefined }),
        ]);
        if (gen !== seq) return;
        errSlot.replaceChildren();
        agent = a;
        checkpoints = (cps && Array.isArray(cps.checkpoints) ? cps.checkpoints : []).slice().reverse(); // newest first
        const entry = { cursor: last ? last.cursor : undefined, entries: Array.isArray(page.entries) ? page.entries : [], next: page.next_cursor || null };
        if (last) pages[pages.length - 1] = entry; else pages = [entry];
        loaded = true;
        draw(false);
      } catch (e) {
        if (gen !== seq) return;
        swap(errSlot, errorBox(e));
        if (!isRefresh && !loaded) [summaryBody, cpBody, diffOut, tlBody].forEach((n) => n.replaceChildren());
      }
    }

    async function loadMore() {
      const last = pages[pages.length - 1];
      if (!last || !last.next || loadingMore) return;
      loadingMore = true; more.disabled = true;
      try {
        const page = await API.timeline(id, { cursor: last.next });
        pages.push({ cursor: last.next, entries: Array.isArray(page.entries) ? page.entries : [], next: page.next_cursor || null });
        draw(false);
      } catch (e) {
        swap(errSlot, errorBox(e));
      } finally { loadingMore = false; more.disabled = false; }
    }

    /** Redraw the parts whose data (or hash parameters) changed. */
    function draw(force) {
      if (!loaded) return;
      const mode = ['detailed', 'raw'].includes(params.get('view')) ? params.get('view') : 'compact';
      const kind = KINDS.some(([v]) => v === params.get('kind')) ? params.get('kind') : 'all';
      viewRadios.forEach((r) => { r.checked = r.value === mode; });
      kindSel.value = kind;
      const s = {
        summary: JSON.stringify([agent, uiWrites]),
        cps: JSON.stringify([checkpoints, uiWrites]),
        diff: JSON.stringify([agent, checkpoints, params.get('a'), params.get('b')]),
        tl: JSON.stringify([pages, mode, kind]),
      };
      if (force || s.summary !== sigs.summary) swap(summaryBody, renderSummary());
      if (force || s.cps !== sigs.cps) swap(cpBody, renderCheckpoints());
      if (force || s.diff !== sigs.diff) renderDiffPanel();
      if (force || s.tl !== sigs.tl) renderTimeline(mode, kind);
      Object.assign(sigs, s);
    }

    function renderSummary() {
      const a = agent;
      const p = a.pending_transition;
      return [
        dlist([
          ['State', code(a.state_name), tid('summary-state')],
          ['Version', scalar(a.version), tid('summary-version')],
          ['Type', a.agent_type == null ? '(untyped)' : a.agent_type, tid('summary-type')],
          ['Created', time(a.created_at)],
          ['Updated', time(a.updated_at), tid('summary-updated')],
          ['Pending transition', p ? badge('pending', 'pending') : 'none'],
        ], 'kv summary'),
        p ? el('div', Object.assign({ class: 'pending-box' }, tid('pending-transition')),
          el('h3', {}, 'Pending transition'),
          dlist([
            ['Id', code(p.id)], ['From → to', el('span', {}, code(p.from_state), ' → ', code(p.to_state))],
            ['Trigger', code(p.trigger)], ['Started', time(p.started_at)],
            ['State data', p.state_data === undefined ? undefined : pre(p.state_data)],
          ]),
          uiWrites ? el('button', Object.assign({ type: 'button', class: 'danger', 'data-key': 'abort' }, tid('abort-button')),
            'Abort pending transition…') : null)
          : null,
        collapsible('State data', pre(a.state_data, { 'data-testid': 'state-data' }), 'sum-state-data', true),
        collapsible('Conversation context', pre(a.conversation_context), 'sum-context', false),
        collapsible('Metadata', pre(a.metadata), 'sum-metadata', false),
      ];
    }

    summaryBody.addEventListener('click', (e) => {
      if (e.target.closest('#abort-button')) openAbort();
    });

    async function openAbort() {
      let fresh;
      try { fresh = await API.agent(id); } catch (e) { swap(errSlot, errorBox(e)); return; }
      const p = fresh.pending_transition;
      if (!p) { notice('There is no pending transition any more.'); agent = fresh; draw(false); return; }
      confirmAction('abort', 'Abort the pending transition of ' + id, [
        el('p', {}, 'The pending transition below will be given up and logged as failed. The agent stays in state ',
          code(fresh.state_name), ' (version ' + scalar(fresh.version) + ').'),
        dlist([['Id', code(p.id)], ['From → to', el('span', {}, code(p.from_state), ' → ', code(p.to_state))],
          ['Trigger', code(p.trigger)], ['Started', time(p.started_at)],
          ['State data', p.state_data === undefined ? undefined : pre(p.state_data)]]),
      ], 'Abort transition', async (reason) => {
        const r = await API.abort(id, p.id, reason);
        return 'Aborted pending transition ' + p.id + ' of ' + id + '; now version ' + scalar(r && r.version) + '.';
      });
    }

    function cpName(c) { return (c.label ? c.label + ' · ' : '') + c.checkpoint_id; }

    function renderCheckpoints() {
      if (!checkpoints.length) return el('p', { class: 'empty' }, 'No checkpoints.');
      return table(Object.assign({ class: 'list' }, tid('checkpoints-table')), 'Checkpoints of ' + id + ', newest first',
        ['Checkpoint', 'Version', 'Created', 'Log / messages', 'Actions'],
        checkpoints.map((c) => el('tr', { 'data-testid': 'checkpoint-row', 'data-checkpoint-id': c.checkpoint_id },
          el('th', { scope: 'row' }, c.label ? el('span', { class: 'label' }, c.label, ' ') : null, code(c.checkpoint_id)),
          el('td', { class: 'num' }, scalar(c.version)),
          el('td', {}, time(c.created_at)),
          el('td', { class: 'num' }, scalar(c.transition_seq) + ' / ' + scalar(c.message_seq)),
          el('td', { class: 'actions' },
            el('button', { type: 'button', class: 'secondary', 'data-testid': 'compare-button', 'data-checkpoint-id': c.checkpoint_id,
              'data-key': 'cmp-' + c.checkpoint_id, 'aria-label': 'Compare checkpoint ' + cpName(c) + ' with the current state' }, 'Compare'),
            uiWrites ? el('button', { type: 'button', class: 'danger', 'data-testid': 'rollback-button', 'data-checkpoint-id': c.checkpoint_id,
              'data-key': 'rb-' + c.checkpoint_id, 'aria-label': 'Roll back to checkpoint ' + cpName(c) }, 'Roll back…') : null))));
    }

    cpBody.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-checkpoint-id]');
      if (!b) return;
      const cid = b.getAttribute('data-checkpoint-id');
      if (b.getAttribute('data-testid') === 'compare-button') {
        patchHash({ a: cid, b: 'current' }, true);
        diffA.focus();
      } else openRollback(cid);
    });

    async function openRollback(cid) {
      const c = checkpoints.find((x) => x.checkpoint_id === cid);
      if (!c) return;
      let fresh;
      try { fresh = await API.agent(id); } catch (e) { swap(errSlot, errorBox(e)); return; }
      confirmAction('rollback', 'Roll ' + id + ' back to checkpoint ' + cpName(c), [
        el('p', {}, 'The agent\u2019s state becomes the checkpoint\u2019s state as a new version (now version ' + scalar(fresh.version) +
          ', checkpoint taken at version ' + scalar(c.version) + '). Changes, current → checkpoint:'),
        diffNode(fresh, c.state, 'current (v' + scalar(fresh.version) + ')', 'checkpoint (v' + scalar(c.version) + ')'),
      ], 'Roll back', async (reason) => {
        const r = await API.rollback(id, cid, reason);
        return 'Rolled ' + id + ' back to ' + cpName(c) + '; now version ' + scalar(r && r.version) + '.';
      });
    }

    let lastOptionsSig = null;

    function renderDiffPanel() {
      const optionsSig = JSON.stringify(checkpoints.map((c) => [c.checkpoint_id, c.label, c.version]));
      if (optionsSig !== lastOptionsSig) { // rebuilt only when the checkpoints change
        lastOptionsSig = optionsSig;
        const opts = () => [el('option', { value: 'current' }, 'current (v' + scalar(agent.version) + ')')]
          .concat(checkpoints.map((c) => el('option', { value: c.checkpoint_id }, cpName(c) + ' (v' + scalar(c.version) + ')')));
        diffA.replaceChildren(...opts());
        diffB.replaceChildren(...opts());
      }
      [diffA, diffB].forEach((s) => { s.options[0].textContent = 'current (v' + scalar(agent.version) + ')'; });
      const known = (v) => v === 'current' || checkpoints.some((c) => c.checkpoint_id === v);
      const a = known(params.get('a')) ? params.get('a') : (checkpoints.length ? checkpoints[0].checkpoint_id : 'current');
      const b = known(params.get('b')) ? params.get('b') : 'current';
      diffA.value = a; diffB.value = b;
      const pick = (v) => (v === 'current' ? agent : checkpoints.find((c) => c.checkpoint_id === v).state);
      swap(diffOut, checkpoints.length || a !== b
        ? diffNode(pick(a), pick(b), diffA.selectedOptions[0].textContent, diffB.selectedOptions[0].textContent)
        : el('p', { class: 'empty' }, 'No checkpoints yet: there is only the current state.'));
    }

    function renderTimeline(mode, kind) {
      const all = pages.flatMap((p) => p.entries);
      const shown = all.filter((e) => entryMatches(e, kind));
      const last = pages[pages.length - 1];
      more.hidden = !(last && last.next);
      const countLine = el('p', { class: 'count' }, shown.length + ' of ' + all.length + ' loaded entries shown' +
        (last && last.next ? ' (more to load)' : ''));
      if (mode === 'raw') { swap(tlBody, countLine, pre(shown, tid('timeline-raw'))); return; }
      if (!shown.length) { swap(tlBody, countLine, el('p', { class: 'empty', 'data-testid': 'empty' }, 'No entries.')); return; }
      swap(tlBody, countLine, el('ol', Object.assign({ class: 'timeline ' + mode }, tid('timeline-list')),
        shown.map((e, i) => entryNode(e, mode, id, i))));
    }

    return {
      title: 'Agent ' + id,
      filterId: 'timeline-kind',
      root,
      async update(p) {
        params = p;
        if (!loaded) await loadAll(false); else draw(false);
      },
      async refresh() {
        if (loadingMore) return;
        await loadAll(true);
      },
    };
  }

  function entryMatches(e, kind) {
    if (kind === 'all') return true;
    if (kind === 'failed') return e.kind === 'transition' && e.transition && e.transition.success === false;
    if (kind === 'rollback') return e.kind === 'transition' && isRollback(e.transition);
    return e.kind === kind;
  }

  function entryNode(e, mode, agentId, i) {
    const kind = String(e.kind);
    const attrs = { class: 'entry kind-' + kind.replace(/[^a-z]/g, ''), 'data-testid': 'timeline-entry', 'data-kind': kind };
    let line = []; let details = [];
    if (kind === 'transition' && e.transition) {
      const t = e.transition;
      const failed = t.success === false;
      const rb = isRollback(t);
      if (failed) { attrs.class += ' failed'; attrs['data-failed'] = 'true'; }
      if (rb) { attrs.class += ' rollback'; attrs['data-rollback'] = 'true'; }
      const aborted = failed && typeof t.error === 'string' && t.error.startsWith('aborted');
      line = [badge(aborted ? 'aborted' : failed ? 'refused' : rb ? t.trigger : 'transition', failed ? 'failed' : rb ? 'rollback' : 'transition'),
        ' #' + scalar(t.seq) + ' ', code(t.from_state), ' → ', code(t.to_state), ' on ', code(t.trigger),
        failed && t.error ? el('span', { class: 'error-text' }, ' — ' + truncate(t.error, 200)) : null,
        rb && t.reason ? el('span', { class: 'reason' }, ' — reason: ' + truncate(t.reason, 200)) : null];
      const payload = t.state_data === undefined ? undefined : pre(t.state_data);
      const common = [['Seq', scalar(t.seq)], ['Id', code(t.id)], ['Timestamp', time(t.timestamp)], ['Success', String(t.success)],
        ['Error (rule and message)', t.error === undefined ? undefined : el('span', { class: 'error-text' }, t.error)],
        ['Reason', t.reason === undefined ? undefined : t.reason], ['From state', code(t.from_state)]];
      details = failed
        ? [dlist(common), el('div', { class: 'rejected', 'data-testid': 'rejected-payload' }, el('h4', {}, 'Rejected payload'),
          dlist([['To state', code(t.to_state)], ['Trigger', code(t.trigger)], ['State data', payload === undefined ? '(none)' : payload]]))]
        : [dlist(common.concat([['To state', code(t.to_state)], ['Trigger', code(t.trigger)], ['State data', payload]]))];
    } else if (kind === 'message' && e.message) {
      const m = e.message;
      line = [badge(String(m.role), 'message'), ' #' + scalar(m.seq) + ' ', el('span', { class: 'content' }, truncate(String(m.content).replace(/\s+/g, ' '), 200))];
      details = [el('pre', { class: 'message-text' }, String(m.content)),
        m.metadata && Object.keys(m.metadata).length ? dlist([['Metadata', pre(m.metadata)]]) : null];
    } else if (kind === 'checkpoint' && e.checkpoint) {
      const c = e.checkpoint;
      line = [badge('checkpoint', 'checkpoint'), ' ', c.label ? c.label + ' · ' : '', code(c.checkpoint_id), ' at version ' + scalar(c.version)];
      details = [dlist([['Log / messages', scalar(c.transition_seq) + ' / ' + scalar(c.message_seq)], ['Created', time(c.created_at)],
        ['State', collapsible('state ' + (c.state ? String(c.state.state_name) : ''), pre(c.state), 'tl-cp-' + c.checkpoint_id, false)]])];
    } else if (kind === 'transfer' && e.transfer) {
      const x = e.transfer;
      const dir = x.to_agent === agentId ? 'in' : 'out';
      attrs['data-direction'] = dir;
      line = [badge('transfer ' + dir, 'transfer'), dir === 'in' ? ' from ' : ' to ',
        agentLink(dir === 'in' ? x.from_agent : x.to_agent, 'tl-' + i + '-agent'), ' on ', code(x.trigger),
        ' · ' + scalar(x.messages_copied) + ' messages copied'];
      details = [transferDetails(x, 'tl-ctx-' + x.transfer_id, mode === 'detailed')];
    } else {
      line = [badge(kind, ''), ' ', shortJson(e, 200)];
      details = [pre(e)];
    }
    return el('li', attrs,
      el('div', { class: 'entry-line' }, time(e.at), ' ', line),
      mode === 'detailed' ? el('div', { class: 'entry-details' }, details) : null);
  }

  function transferDetails(x, ctxKey, open) {
    return dlist([['Transfer id', code(x.transfer_id)], ['From', agentLink(x.from_agent)], ['To', agentLink(x.to_agent)],
      ['Trigger', code(x.trigger)], ['To trigger', x.to_trigger === undefined ? undefined : code(x.to_trigger)],
      ['Versions', 'from v' + scalar(x.from_version) + ' → to v' + scalar(x.to_version)],
      ['Messages copied', scalar(x.messages_copied)], ['Created', time(x.created_at)],
      ['Context', collapsible('context', pre(x.context), ctxKey, open)]]);
  }

  // ───────────────────────────── diff ─────────────────────────────

  const kindOf = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

  /** Structural diff: [{ op: added|removed|changed, path: [keys], old, new }]. Recursive over objects and arrays. */
  function diff(a, b, path, out) {
    path = path || []; out = out || [];
    if (out.length > DIFF_MAX_ROWS) return out;
    const ka = kindOf(a); const kb = kindOf(b);
    if (ka === 'object' && kb === 'object') {
      const keys = Array.from(new Set(Object.keys(a).concat(Object.keys(b)))).sort();
      for (const k of keys) {
        if (!has(a, k)) out.push({ op: 'added', path: path.concat([k]), new: b[k] });
        else if (!has(b, k)) out.push({ op: 'removed', path: path.concat([k]), old: a[k] });
        else diff(a[k], b[k], path.concat([k]), out);
      }
    } else if (ka === 'array' && kb === 'array') {
      const n = Math.max(a.length, b.length);
      for (let i = 0; i < n; i++) {
        if (i >= a.length) out.push({ op: 'added', path: path.concat([i]), new: b[i] });
        else if (i >= b.length) out.push({ op: 'removed', path: path.concat([i]), old: a[i] });
        else diff(a[i], b[i], path.concat([i]), out);
      }
    } else if (ka !== kb || !Object.is(a, b)) {
      out.push({ op: 'changed', path, old: a, new: b });
    }
    return out;
  }

  function pathText(path) {
    if (!path.length) return '(whole value)';
    return path.map((k, i) => (typeof k === 'number' ? '[' + k + ']'
      : /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? (i ? '.' : '') + k : '[' + JSON.stringify(k) + ']')).join('');
  }

  /** The parts of a state worth comparing: bookkeeping (id, version, timestamps) left out. */
  function comparable(s) {
    if (!s || typeof s !== 'object') return s;
    const c = Object.assign({}, s);
    delete c.agent_id; delete c.version; delete c.created_at; delete c.updated_at;
    return c;
  }

  function diffNode(a, b, labelA, labelB) {
    const rows = diff(comparable(a), comparable(b));
    if (!rows.length) return el('p', Object.assign({ class: 'empty' }, tid('diff-empty')), 'No differences between ' + labelA + ' and ' + labelB + '.');
    const capped = rows.length > DIFF_MAX_ROWS;
    const counts = { added: 0, removed: 0, changed: 0 };
    rows.forEach((r) => { counts[r.op]++; });
    return el('div', {},
      table(Object.assign({ class: 'diff' }, tid('diff-table')),
        (capped ? 'More than ' + DIFF_MAX_ROWS : rows.length) + ' differences from ' + labelA + ' to ' + labelB +
        ' (' + counts.added + ' added, ' + counts.removed + ' removed, ' + counts.changed + ' changed; version and timestamps not compared)',
        ['Change', 'Path', 'A (old)', 'B (new)'],
        rows.slice(0, DIFF_MAX_ROWS).map((r) => el('tr', { class: 'op-' + r.op, 'data-testid': 'diff-row', 'data-op': r.op, 'data-path': pathText(r.path) },
          el('td', {}, badge(r.op, r.op)),
          el('th', { scope: 'row' }, el('code', {}, pathText(r.path))),
          el('td', {}, r.op === 'added' ? '' : el('code', { class: 'val' }, shortJson(r.old, 500))),
          el('td', {}, r.op === 'removed' ? '' : el('code', { class: 'val' }, shortJson(r.new, 500)))))));
  }

  // ───────────────────────────── views: threads ─────────────────────────────

  function ThreadsView() {
    return ListView({
      title: 'Threads', route: 'threads', formId: 'threads-filter', applyId: 'threads-apply', itemsKey: 'threads',
      intro: 'Framework (LangGraph) checkpoint threads.',
      fields: [{ key: 'prefix', id: 'threads-prefix', label: 'Thread id prefix' }],
      query: (p) => ({ prefix: p.get('prefix') }),
      fetch: API.threads,
      renderItems(items, _p, page) {
        if (!items.length) return el('p', { class: 'empty', 'data-testid': 'empty' }, 'No threads match.');
        return table(Object.assign({ class: 'list' }, tid('threads-table')), 'Threads, page ' + page + ' (' + items.length + ' shown)',
          ['Thread id', 'Checkpoints', 'Latest checkpoint', 'Updated'],
          items.map((t) => el('tr', { 'data-testid': 'thread-row', 'data-thread-id': t.thread_id },
            el('th', { scope: 'row' }, el('a', { href: '#/thread/' + enc(t.thread_id), class: 'id', 'data-testid': 'thread-link', 'data-key': 'thread-' + t.thread_id }, String(t.thread_id))),
            el('td', { class: 'num' }, scalar(t.checkpoints)),
            el('td', {}, code(t.latest_checkpoint_id)),
            el('td', {}, time(t.updated_at)))));
      },
    });
  }

  function ThreadView(id) {
    const heading = el('h1', { tabindex: '-1' }, 'Thread ', el('span', { class: 'id' }, id));
    const errSlot = el('div', { class: 'error-slot' });
    const nsInput = el('input', Object.assign({ type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '(root)' }, tid('thread-ns')));
    const nsForm = el('form', Object.assign({ class: 'filters', role: 'search', 'aria-label': 'Namespace filter' }, tid('thread-ns-form')),
      field('Namespace (checkpoint_ns)', nsInput), el('div', { class: 'field buttons' }, el('button', { type: 'submit' }, 'Apply')));
    const treeBody = el('div', tid('checkpoint-tree'));
    const viewBody = el('div', tid('checkpoint-view'));
    const older = el('button', Object.assign({ type: 'button', class: 'secondary', hidden: true }, tid('history-more')), 'Load older checkpoints');
    let params = new URLSearchParams();
    let hist = []; let view = null; let seq = 0; const sigs = {};
    let olderList = []; let olderNext = null; let firstNext = null; let loadingOlder = false; let lastNs = '';
    older.addEventListener('click', loadOlder);

    nsForm.addEventListener('submit', (e) => { e.preventDefault(); patchHash({ ns: nsInput.value, checkpoint: null }, false); });

    const root = el('section', { class: 'view' }, heading, nsForm, errSlot,
      el('div', { class: 'split' },
        el('section', { class: 'panel tree-panel', 'aria-labelledby': 'tree-h' }, el('h2', { id: 'tree-h' }, 'Checkpoints (newest first)'), treeBody, older),
        el('section', { class: 'panel', 'aria-labelledby': 'cv-h' }, el('h2', { id: 'cv-h' }, 'Selected checkpoint'), viewBody)));

    async function load(isRefresh) {
      const gen = ++seq;
      const ns = params.has('ns') ? params.get('ns') : undefined;
      const cid = params.get('checkpoint') || undefined;
      try {
        // The newest page again; pages of older checkpoints already loaded are kept.
        const [h, v] = await Promise.all([
          API.threadHistory(id, { checkpoint_ns: ns, limit: HISTORY_LIMIT }),
          API.threadView(id, { checkpoint_ns: ns, checkpoint_id: cid }),
        ]);
        if (gen !== seq) return;
        errSlot.replaceChildren();
        firstNext = h && h.next_cursor ? h.next_cursor : null;
        hist = mergeHistory(h && Array.isArray(h.checkpoints) ? h.checkpoints : [], olderList);
        view = v;
        older.hidden = !(olderList.length ? olderNext : firstNext);
        const s = { tree: JSON.stringify([hist, view && view.checkpoint_id]), view: JSON.stringify([view, uiWrites]) };
        if (s.tree !== sigs.tree) swap(treeBody, renderTree());
        if (s.view !== sigs.view) swap(viewBody, renderView());
        Object.assign(sigs, s);
      } catch (e) {
        if (gen !== seq) return;
        swap(errSlot, errorBox(e));
        if (!isRefresh) { treeBody.replaceChildren(); viewBody.replaceChildren(); sigs.tree = sigs.view = null; }
      }
    }

    function mergeHistory(a, b) {
      const seen = new Set();
      return a.concat(b).filter((c) => !seen.has(c.checkpoint_id) && seen.add(c.checkpoint_id));
    }

    async function loadOlder() {
      const cursor = olderList.length ? olderNext : firstNext;
      if (!cursor || loadingOlder) return;
      loadingOlder = true; older.disabled = true;
      try {
        const h = await API.threadHistory(id, { checkpoint_ns: params.get('ns') || undefined, limit: HISTORY_LIMIT, cursor });
        olderList = olderList.concat(h && Array.isArray(h.checkpoints) ? h.checkpoints : []);
        olderNext = h && h.next_cursor ? h.next_cursor : null;
        hist = mergeHistory(hist, olderList);
        older.hidden = !olderNext;
        sigs.tree = JSON.stringify([hist, view && view.checkpoint_id]);
        swap(treeBody, renderTree());
      } catch (e) {
        swap(errSlot, errorBox(e));
      } finally { loadingOlder = false; older.disabled = false; }
    }

    function nodeHref(c) {
      const p = new URLSearchParams(params);
      p.set('checkpoint', c.checkpoint_id);
      return hashFor('thread', id, p);
    }

    function renderTree() {
      if (!hist.length) return el('p', { class: 'empty', 'data-testid': 'empty' }, 'No checkpoints.');
      const selected = view ? view.checkpoint_id : params.get('checkpoint');
      const groups = new Map();
      for (const c of hist) {
        const ns = c.checkpoint_ns == null ? '' : String(c.checkpoint_ns);
        if (!groups.has(ns)) groups.set(ns, []);
        groups.get(ns).push(c);
      }
      const out = [el('p', { class: 'count' }, hist.length + ' checkpoints loaded')];
      for (const [ns, list] of groups) {
        if (groups.size > 1 || ns !== '') out.push(el('h3', {}, 'Namespace ', code(ns === '' ? '(root)' : ns)));
        out.push(buildTree(list, ns, selected));
      }
      return out;
    }

    /** Nested list by parent: straight runs stay flat (newest first), a fork nests one list per branch. */
    function buildTree(list, ns, selected) {
      const nodes = new Map();
      list.forEach((c) => nodes.set(c.checkpoint_id, { c, kids: [] }));
      const roots = [];
      for (const n of nodes.values()) { // history order: newest first, so kids and roots are newest first too
        const p = n.c.parent_checkpoint_id;
        if (p != null && p !== n.c.checkpoint_id && nodes.has(p)) nodes.get(p).kids.push(n); else roots.push(n);
      }
      const seen = new Set();
      const item = (n) => {
        const c = n.c; const fork = n.kids.length > 1;
        const m = c.metadata && typeof c.metadata === 'object' ? c.metadata : {};
        const info = [m.step !== undefined ? 'step ' + scalar(m.step) : null, m.source !== undefined ? scalar(m.source) : null].filter(Boolean).join(' · ');
        return el('li', { class: fork ? 'fork' : null },
          el('a', { href: nodeHref(c), class: 'node id', 'data-testid': 'checkpoint-node', 'data-checkpoint-id': c.checkpoint_id,
            'data-key': 'node-' + ns + '/' + c.checkpoint_id, 'data-fork': fork ? 'true' : null,
            'aria-current': c.checkpoint_id === selected ? 'true' : null }, String(c.checkpoint_id)),
          info ? el('span', { class: 'meta' }, ' ' + info) : null,
          fork ? badge('fork · ' + n.kids.length + ' branches', 'fork') : null);
      };
      const branch = (ul, start) => {
        const run = [];
        for (let n = start; n && !seen.has(n); n = n.kids.length === 1 ? n.kids[0] : null) { seen.add(n); run.push(n); }
        for (let i = run.length - 1; i >= 0; i--) {
          const li = item(run[i]);
          if (run[i].kids.length > 1) {
            const sub = el('ul', { class: 'branches' });
            run[i].kids.forEach((k, j) => {
              if (seen.has(k)) return;
              const bl = el('ul', { class: 'tree' });
              branch(bl, k);
              sub.appendChild(el('li', { class: 'branch' }, el('span', { class: 'branch-label' }, 'branch ' + (j + 1)), bl));
            });
            li.appendChild(sub);
          }
          ul.appendChild(li);
        }
      };
      const top = el('ul', { class: 'tree' });
      roots.forEach((r) => branch(top, r));
      for (const n of nodes.values()) if (!seen.has(n)) branch(top, n); // cycles: shown flat, never lost
      return top;
    }

    function renderView() {
      const v = view;
      if (!v) return el('p', { class: 'empty' }, 'No checkpoint.');
      const channels = v.channels && typeof v.channels === 'object' ? Object.entries(v.channels) : [];
      const writes = Array.isArray(v.writes) ? v.writes : [];
      const parentLink = v.parent_checkpoint_id == null ? 'none (root)'
        : el('a', { href: nodeHref({ checkpoint_id: v.parent_checkpoint_id }), class: 'id', 'data-key': 'parent-link' }, String(v.parent_checkpoint_id));
      return [
        el('h3', {}, 'Checkpoint ', code(v.checkpoint_id), params.get('checkpoint') ? null : badge('latest', 'latest')),
        dlist([['Namespace', code(v.checkpoint_ns === '' ? '(root)' : v.checkpoint_ns)], ['Checkpoint id', code(v.checkpoint_id)],
          ['Parent', parentLink], ['Metadata', pre(v.metadata, tid('checkpoint-metadata'))],
          ['Checkpoint value', v.checkpoint === undefined ? undefined : collapsible('serialized checkpoint', typed(v.checkpoint), 'cp-value', false)]]),
        uiWrites ? el('button', Object.assign({ type: 'button', class: 'danger', 'data-key': 'fork' }, tid('fork-button')),
          'Fork the thread from this checkpoint…') : null,
        el('h3', {}, 'Channels'),
        channels.length ? channelsTable(channels, 'channels-table') : el('p', { class: 'empty' }, 'No channel values.'),
        el('h3', {}, 'Pending writes'),
        writes.length ? table(Object.assign({ class: 'list' }, tid('writes-table')), writes.length + ' pending writes',
          ['Task id', 'Task path', 'Index', 'Channel', 'Value'],
          writes.map((w) => el('tr', { 'data-testid': 'write-row' },
            el('td', {}, code(w.task_id)), el('td', {}, code(w.task_path)), el('td', { class: 'num' }, scalar(w.idx)),
            el('th', { scope: 'row' }, code(w.channel)), el('td', {}, typed(w.value)))))
          : el('p', { class: 'empty' }, 'No pending writes.'),
      ];
    }

    viewBody.addEventListener('click', (e) => {
      if (!e.target.closest('#fork-button') || !view) return;
      const v = view;
      const channels = v.channels && typeof v.channels === 'object' ? Object.entries(v.channels) : [];
      confirmAction('fork', 'Fork thread ' + id + ' from checkpoint ' + v.checkpoint_id, [
        el('p', {}, 'A new checkpoint is made from ', code(v.checkpoint_id), ' (namespace ', code(v.checkpoint_ns === '' ? '(root)' : v.checkpoint_ns),
          ') and becomes the thread\u2019s latest, so the framework continues from it. Its channels:'),
        channels.length ? channelsTable(channels, 'fork-preview-channels') : el('p', { class: 'empty' }, 'No channel values.'),
      ], 'Fork thread', async (reason) => {
        const r = await API.fork(id, v.checkpoint_ns, v.checkpoint_id, reason);
        const newId = r && r.checkpoint_id != null ? String(r.checkpoint_id) : null;
        if (newId) patchHash({ checkpoint: newId }, false);
        return 'Forked ' + id + ' from ' + v.checkpoint_id + (newId ? ': new checkpoint ' + newId + '.' : '.');
      });
    });

    return {
      title: 'Thread ' + id,
      filterId: 'thread-ns',
      root,
      async update(p) {
        params = p;
        if ((p.get('ns') || '') !== lastNs) { lastNs = p.get('ns') || ''; olderList = []; olderNext = null; }
        nsInput.value = p.get('ns') || '';
        await load(false);
      },
      refresh: () => load(true),
    };
  }

  function channelsTable(channels, testid) {
    return table(Object.assign({ class: 'list' }, tid(testid)), channels.length + ' channels', ['Channel', 'Version', 'Value'],
      channels.map(([name, c]) => el('tr', { 'data-testid': 'channel-row', 'data-channel': name },
        el('th', { scope: 'row' }, code(name)), el('td', {}, code(c && c.version)), el('td', {}, typed(c && c.value)))));
  }

  /** A typed value: decoded JSON pretty-printed, else "raw N bytes: hex…". */
  function typed(r) {
    if (!r || typeof r !== 'object') return pre(r);
    const type = r.type != null ? el('span', { class: 'type' }, String(r.type)) : null;
    if (r.decoded === true) return el('div', {}, type, pre(r.value));
    const hex = r.hex == null ? '' : String(r.hex);
    const cut = typeof r.bytes === 'number' && hex.length / 2 < r.bytes;
    return el('div', { class: 'raw-bytes' }, type, ' raw ' + scalar(r.bytes) + ' bytes: ', el('code', { class: 'hex' }, hex + (cut ? '…' : '')));
  }

  // ───────────────────────────── views: transfers ─────────────────────────────

  function TransfersView() {
    return ListView({
      title: 'Transfers', route: 'transfers', formId: 'transfers-filter', applyId: 'transfers-apply', itemsKey: 'transfers',
      intro: 'Hand-overs between agents: who passed the conversation to whom.',
      fields: [{ key: 'agent', id: 'transfers-agent', label: 'Agent (from or to)' }],
      query: (p) => ({ agent: p.get('agent') }),
      fetch: API.transfers,
      renderItems(items, p, page) {
        if (!items.length) return el('p', { class: 'empty', 'data-testid': 'empty' }, 'No transfers match.');
        const focus = p.get('agent');
        return table(Object.assign({ class: 'list' }, tid('transfers-table')), 'Transfers, page ' + page + ' (' + items.length + ' shown)',
          ['Transfer', 'From → to', 'Trigger', 'When', 'Messages copied', 'Versions', 'Context'],
          items.map((x) => el('tr', { 'data-testid': 'transfer-row', 'data-transfer-id': x.transfer_id },
            el('th', { scope: 'row' }, code(x.transfer_id),
              focus ? badge(x.to_agent === focus ? 'in' : 'out', 'transfer') : null),
            el('td', { class: 'lineage' }, agentLink(x.from_agent, 'from-' + x.transfer_id), el('span', { 'aria-hidden': 'true', class: 'arrow' }, ' → '),
              el('span', { class: 'visually-hidden' }, ' to '), agentLink(x.to_agent, 'to-' + x.transfer_id)),
            el('td', {}, code(x.trigger), x.to_trigger !== undefined ? el('span', { class: 'meta' }, ' (then ', code(x.to_trigger), ')') : null),
            el('td', {}, time(x.created_at)),
            el('td', { class: 'num' }, scalar(x.messages_copied)),
            el('td', { class: 'num' }, 'v' + scalar(x.from_version) + ' → v' + scalar(x.to_version)),
            el('td', {}, collapsible('context', pre(x.context), 'ctx-' + x.transfer_id, false)))));
      },
    });
  }

  // ───────────────────────────── views: durability, usage ─────────────────────────────

  const STATUS_KNOWN = new Set(['ready', 'backend', 'backend_reachable', 'wal_segments', 'wal_bytes', 'wal_last_lsn', 'flushed_lsn',
    'backlog_agents', 'backlog_bytes', 'backlog_bytes_max', 'backlog_oldest_age_ms', 'last_flush_at', 'last_flush_error', 'cache_entries', 'cache_bytes', 'leases_held']);

  function StatusView() {
    const body = el('div', tid('status-panel'));
    const errSlot = el('div', { class: 'error-slot' });
    let seq = 0; let lastSig = null;
    const fig = (label, value, name, cls) => el('div', { class: 'figure ' + (cls || '') }, el('dt', {}, label), el('dd', tid(name), value));
    const yes = (b) => (b === true ? 'yes' : b === false ? 'no' : scalar(b));

    function draw(s) {
      const unflushed = typeof s.wal_last_lsn === 'number' && typeof s.flushed_lsn === 'number' ? Math.max(0, s.wal_last_lsn - s.flushed_lsn) : null;
      const max = typeof s.backlog_bytes_max === 'number' ? s.backlog_bytes_max : 0;
      const fill = max > 0 && typeof s.backlog_bytes === 'number' ? s.backlog_bytes / max : null;
      const extra = Object.entries(s).filter(([k]) => !STATUS_KNOWN.has(k));
      return [
        el('section', { class: 'panel', 'aria-labelledby': 'st-h1' }, el('h2', { id: 'st-h1' }, 'Sidecar and backend'),
          el('dl', { class: 'figures' },
            fig('Ready', yes(s.ready), 'status-ready', s.ready === false ? 'bad' : ''),
            fig('Backend', scalar(s.backend), 'status-backend'),
            fig('Backend reachable', yes(s.backend_reachable), 'status-backend-reachable', s.backend_reachable === false ? 'bad' : ''),
            fig('Cache entries', scalar(s.cache_entries), 'status-cache-entries'),
            fig('Cache bytes', bytes(s.cache_bytes), 'status-cache-bytes'),
            fig('Ownership leases held', scalar(s.leases_held), 'status-leases'))),
        el('section', { class: 'panel', 'aria-labelledby': 'st-h2' }, el('h2', { id: 'st-h2' }, 'Write-ahead log vs backend'),
          el('dl', { class: 'figures' },
            fig('WAL last LSN', scalar(s.wal_last_lsn), 'status-wal-last-lsn'),
            fig('Flushed LSN (in the backend)', scalar(s.flushed_lsn), 'status-flushed-lsn'),
            fig('Records not yet in the backend', unflushed == null ? '—' : String(unflushed), 'status-unflushed', unflushed ? 'warn' : ''),
            fig('WAL segments', scalar(s.wal_segments), 'status-wal-segments'),
            fig('WAL bytes', bytes(s.wal_bytes), 'status-wal-bytes'),
            fig('Last flush', s.last_flush_at === undefined ? 'none yet' : time(s.last_flush_at), 'status-last-flush'),
            fig('Last flush error', s.last_flush_error === undefined ? 'none' : s.last_flush_error, 'status-flush-error',
              s.last_flush_error !== undefined ? 'bad wide' : 'wide'))),
        el('section', { class: 'panel', 'aria-labelledby': 'st-h3' }, el('h2', { id: 'st-h3' }, 'Backlog (acknowledged, waiting to flush)'),
          el('dl', { class: 'figures' },
            fig('Agents in backlog', scalar(s.backlog_agents), 'status-backlog-agents'),
            fig('Backlog fill', el('span', {}, bytes(s.backlog_bytes), ' of ', bytes(s.backlog_bytes_max),
              fill == null ? '' : ' (' + (fill * 100).toFixed(1) + '%)'), 'status-backlog', fill != null && fill > 0.8 ? 'bad' : fill > 0.5 ? 'warn' : ''),
            fig('Oldest entry age', fmtMs(s.backlog_oldest_age_ms), 'status-backlog-oldest')),
          fill == null ? null : el('div', { class: 'meter' }, el('label', { for: 'status-backlog-meter' }, 'Backlog fill'),
            el('meter', Object.assign({ min: '0', max: String(max), low: String(max * 0.5), high: String(max * 0.8), optimum: '0', value: String(s.backlog_bytes) }, tid('status-backlog-meter'))))),
        extra.length ? el('section', Object.assign({ class: 'panel', 'aria-labelledby': 'st-h5' }, tid('status-extra')),
          el('h2', { id: 'st-h5' }, 'Other figures'), generic(Object.fromEntries(extra))) : null,
      ];
    }

    async function load(isRefresh) {
      const gen = ++seq;
      try {
        const s = await API.status();
        if (gen !== seq) return;
        errSlot.replaceChildren();
        const sig = JSON.stringify(s);
        if (sig !== lastSig) { lastSig = sig; swap(body, draw(s || {})); }
      } catch (e) {
        if (gen !== seq) return;
        swap(errSlot, errorBox(e));
        if (!isRefresh) { body.replaceChildren(); lastSig = null; }
      }
    }

    return {
      title: 'Durability', filterId: null,
      root: el('section', { class: 'view' }, el('h1', { tabindex: '-1' }, 'Durability'),
        el('p', { class: 'intro' }, 'Where acknowledged writes are: in the write-ahead log, in the backlog, and in the backend.'), errSlot, body),
      update: () => { lastSig = null; return load(false); },
      refresh: () => load(true),
    };
  }

  function UsageView() {
    const topInput = el('input', Object.assign({ type: 'number', min: '1', max: '1000', step: '1', inputmode: 'numeric' }, tid('usage-top')));
    const form = el('form', Object.assign({ class: 'filters', 'aria-label': 'Usage options' }, tid('usage-form')),
      field('Largest agents to list', topInput), el('div', { class: 'field buttons' }, el('button', { type: 'submit' }, 'Apply')));
    const errSlot = el('div', { class: 'error-slot' });
    const body = el('div', {});
    let top = '20'; let seq = 0; let lastSig = null;
    form.addEventListener('submit', (e) => { e.preventDefault(); patchHash({ top: topInput.value }, false); });

    const TABLE_ORDER = ['name', 'table', 'rows', 'data_bytes', 'storage_bytes', 'bytes', 'index_bytes'];
    const LABELS = { name: 'Table', table: 'Table', rows: 'Rows', data_bytes: 'Data', storage_bytes: 'On disk', bytes: 'Bytes', index_bytes: 'Indexes', agent_id: 'Agent id' };
    const columns = (items, order) => {
      const keys = new Set(); items.forEach((t) => Object.keys(t || {}).forEach((k) => keys.add(k)));
      return order.filter((k) => keys.has(k)).concat(Array.from(keys).filter((k) => !order.includes(k)));
    };
    const cell = (k, v) => (typeof v === 'number' && /bytes$/.test(k) ? el('td', { class: 'num' }, bytes(v))
      : el('td', { class: typeof v === 'number' ? 'num' : null }, v !== null && typeof v === 'object' ? pre(v) : scalar(v)));

    function draw(u) {
      const tables = Array.isArray(u.tables) ? u.tables : [];
      const largest = Array.isArray(u.largest) ? u.largest : [];
      const tcols = columns(tables, TABLE_ORDER);
      const lcols = columns(largest, ['agent_id', 'bytes']);
      const extra = Object.entries(u).filter(([k]) => !['backend', 'tables', 'largest'].includes(k));
      return [
        dlist([['Backend', scalar(u.backend), tid('usage-backend')]]),
        tables.length ? table(Object.assign({ class: 'list' }, tid('usage-tables')), 'Storage per table', tcols.map((k) => LABELS[k] || k),
          tables.map((t) => el('tr', {}, tcols.map((k, i) => (i === 0 ? el('th', { scope: 'row' }, code(scalar(t[k]))) : cell(k, t[k]))))))
          : el('p', { class: 'empty' }, 'No tables reported.'),
        largest.length ? table(Object.assign({ class: 'list' }, tid('usage-largest')), 'Largest agents and threads, most bytes first',
          lcols.map((k) => LABELS[k] || k),
          largest.map((a) => el('tr', { 'data-testid': 'largest-row' }, lcols.map((k) => (k === 'agent_id'
            ? el('th', { scope: 'row' }, agentLink(a.agent_id, 'usage-' + a.agent_id)) : cell(k, a[k]))))))
          : el('p', { class: 'empty' }, 'No agents.'),
        extra.length ? el('section', { class: 'panel' }, el('h2', {}, 'Other figures'), generic(Object.fromEntries(extra))) : null,
      ];
    }

    async function load(isRefresh) {
      const gen = ++seq;
      try {
        const u = await API.usage({ top });
        if (gen !== seq) return;
        errSlot.replaceChildren();
        const sig = JSON.stringify(u);
        if (sig !== lastSig) { lastSig = sig; swap(body, draw(u || {})); }
      } catch (e) {
        if (gen !== seq) return;
        swap(errSlot, errorBox(e));
        if (!isRefresh) { body.replaceChildren(); lastSig = null; }
      }
    }

    return {
      title: 'Usage', filterId: 'usage-top', pollMs: USAGE_POLL_MS,
      root: el('section', { class: 'view' }, el('h1', { tabindex: '-1' }, 'Storage usage'),
        el('p', { class: 'intro' }, 'What the backend holds, per table and for the largest agents. Refreshed every 10 s while live.'), form, errSlot, body),
      update(p) {
        top = /^\d+$/.test(p.get('top') || '') ? p.get('top') : '20';
        topInput.value = top;
        lastSig = null;
        return load(false);
      },
      refresh: () => load(true),
    };
  }

  // ───────────────────────────── start ─────────────────────────────

  function wireHeader() {
    $('#live-toggle').addEventListener('click', () => setLive(!live, true));
    $('#token-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const input = $('#token-input');
      const t = input.value.trim();
      input.value = '';
      if (!t) { $('#token-error').textContent = 'Enter the token.'; return; }
      bearer = t;
      tokenRefused = false;
      $('#token-form').hidden = true;
      $('#token-error').textContent = '';
      await loadInspector();
      current = null; // rebuild the current view with the token
      render();
    });
    $('#skip-link').addEventListener('click', () => { const h = $('#view h1'); if (h) h.focus(); });
    document.addEventListener('keydown', (e) => {
      if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target;
      if (t instanceof Element && t.closest('input, textarea, select, [contenteditable]')) return;
      if ($('#confirm-dialog').open) return;
      const fid = current && current.view.filterId;
      const f = fid ? document.getElementById(fid) : null;
      if (!f) return;
      e.preventDefault();
      f.focus();
      if (typeof f.select === 'function' && f.tagName === 'INPUT') f.select();
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden && live) tick(); });
  }

  async function start() {
    wireHeader();
    wireDialog();
    window.addEventListener('hashchange', render);
    await loadInspector();
    setLive(true);
    render();
  }

  start();
})();
