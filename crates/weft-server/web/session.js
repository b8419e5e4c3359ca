// <weft-session>: one session. Its transcript per branch, lifecycle
// buttons, the tokens-per-turn chart, fork at a turn, and the live part:
// send a prompt, watch the answer stream token by token over SSE, cancel
// the turn, choose what a prompt does while a turn runs. After a dropped
// connection the stream resumes with Last-Event-ID: records are never shown
// twice (by seq) and the streamed answer is replaced by its durable record.
import { api, Follow } from './api.js';
import { h, notice, badge, confirmDialog, promptDialog } from './dom.js';
import { tokensChart } from './chart.js';
import { messageView, usagePerTurn, recordMessage } from './transcript.js';

class WeftSession extends HTMLElement {
  connectedCallback() {
    this.sid = this.getAttribute('session');
    this.focusSeq = Number(this.getAttribute('seq')) || null;
    this.seen = new Set();
    this.messages = [];
    this.live = null; // {turn, el, text, stale}
    this.load();
  }

  disconnectedCallback() { if (this.follow) this.follow.close(); }

  path(rest = '') { return `/sessions/${encodeURIComponent(this.sid)}${rest}`; }

  async load() {
    try {
      this.session = await api('GET', this.path());
      this.branches = await api('GET', this.path('/branches'));
    } catch (e) {
      this.replaceChildren(h('p', { class: 'error' }, e.message), h('a', { href: '#/' }, 'Back to sessions'));
      return;
    }
    this.branch = this.branch || this.session.defaultBranch;
    this.running = this.session.running;
    this.render();
    await this.loadTranscript();
    if (this.follow) this.follow.close();
    this.follow = new Follow(this.sid, {
      after: this.session.lastSeq,
      onEvent: (name, data) => this.onEvent(name, data),
      onReconnect: (n) => { this.dataset.reconnects = String(n); this.onReconnect(); },
      onState: (s) => { this.conn.textContent = s === 'open' ? 'live' : 'reconnecting…'; this.conn.className = `conn ${s}`; },
    });
  }

  render() {
    const s = this.session;
    this.titleEl = h('h1', {}, s.name || s.sessionId);
    this.status = h('span', {}, badge(s.status, s.running));
    this.conn = h('span', { class: 'conn', role: 'status' }, 'connecting…');
    const life = (label, action, cls) => h('button', { class: cls, onclick: () => this.lifecycle(action) }, label);
    this.branchSelect = h('select', { 'aria-label': 'Branch' },
      this.branches.map((b) => h('option', { value: b.name, selected: b.name === this.branch }, `${b.name}${b.default ? ' (default)' : ''}`)));
    this.branchSelect.addEventListener('change', () => { this.branch = this.branchSelect.value; this.loadTranscript(); });
    this.chart = h('figure', { class: 'chart-box' });
    this.transcript = h('section', { class: 'transcript', 'aria-label': 'Transcript' });
    this.prompt = h('textarea', { rows: 3, placeholder: 'Send a prompt (Ctrl+Enter)', 'aria-label': 'Prompt' });
    this.prompt.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.send(); } });
    this.multitask = h('select', { 'aria-label': 'While a turn runs' },
      h('option', { value: 'reject' }, 'refuse it'),
      h('option', { value: 'enqueue' }, 'queue it'),
      h('option', { value: 'interrupt' }, 'interrupt the turn'));
    this.cancelButton = h('button', { class: 'danger', disabled: !s.running, onclick: () => this.cancel() }, 'Cancel turn');
    const sid = encodeURIComponent(this.sid);
    this.replaceChildren(
      h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, 'Sessions'), ' / ', h('span', {}, s.name || s.sessionId)),
      h('div', { class: 'page-head' }, this.titleEl, this.status, this.conn),
      h('p', { class: 'meta' }, `${s.sessionId} · ${s.profileName} · ${s.project}${s.model ? ` · ${s.model}` : ''}`,
        s.forkedFrom ? h('span', {}, ' · fork of ', h('a', { href: `#/s/${encodeURIComponent(s.forkedFrom.sessionId)}` }, s.forkedFrom.sessionId), ` at turn ${s.forkedFrom.turn}`) : null),
      h('div', { class: 'toolbar' },
        life('Start', 'start'), life('Complete', 'complete'), life('Fail', 'fail'), life('Terminate', 'terminate', 'danger'),
        h('button', { onclick: () => this.rename() }, 'Rename'),
        h('a', { class: 'button', href: `#/s/${sid}/branches` }, 'Branches'),
        h('a', { class: 'button', href: `#/s/${sid}/state` }, 'State'),
        h('label', {}, 'Branch ', this.branchSelect)),
      this.chart,
      this.transcript,
      h('form', { class: 'composer', onsubmit: (e) => { e.preventDefault(); this.send(); } },
        this.prompt,
        h('div', { class: 'row' },
          h('button', { class: 'primary', type: 'submit' }, 'Send'),
          h('label', {}, 'If a turn is running: ', this.multitask),
          this.cancelButton)));
  }

  async loadTranscript() {
    try {
      const list = await api('GET', this.path(`/transcript?branch=${encodeURIComponent(this.branch)}`));
      this.messages = list;
      this.seen = new Set(list.map((m) => m.seq));
      this.transcript.replaceChildren(...list.map((m) => this.view(m)));
      this.live = null;
      this.drawChart();
      if (this.focusSeq) {
        const el = this.querySelector(`#m${this.focusSeq}`);
        if (el) { el.classList.add('focus'); el.scrollIntoView({ block: 'center' }); }
        this.focusSeq = null;
      }
    } catch (e) { notice(e.message, 'error'); }
  }

  view(m) {
    const actions = [];
    if (m.role === 'user') {
      const turn = this.messages.filter((x) => x.role === 'user' && x.seq <= m.seq).length || 1;
      actions.push(h('button', { class: 'small', onclick: () => this.fork(turn) }, `Fork at turn ${turn}`));
    }
    return messageView(m, actions);
  }

  drawChart() {
    const svg = tokensChart(usagePerTurn(this.messages));
    this.chart.replaceChildren(...(svg ? [svg, h('figcaption', {}, 'Tokens per turn (input, output)')] : []));
  }

  append(m) {
    if (this.seen.has(m.seq) || m.branch !== this.branchId()) return;
    this.seen.add(m.seq);
    this.messages.push(m);
    if (m.role === 'assistant' && this.live) { this.live.el.remove(); this.live = null; }
    const el = this.view(m);
    this.transcript.append(el);
    el.scrollIntoView({ block: 'nearest' });
    this.drawChart();
  }

  branchId() {
    const b = this.branches.find((x) => x.name === this.branch);
    return b ? b.id : this.branch;
  }

  liveBubble(turn) {
    if (!this.live) {
      const text = h('div', { class: 'live-text' });
      const el = h('article', { class: 'msg assistant live', 'aria-live': 'polite' },
        h('header', {}, h('span', { class: 'role' }, 'assistant'), h('span', { class: 'typing' }, 'streaming…')), text);
      this.transcript.append(el);
      this.live = { turn, el, text, stale: false };
    }
    return this.live;
  }

  onEvent(name, data) {
    const mine = !data.branch || data.branch === this.branchId() || data.branch === this.branch;
    switch (name) {
      case 'message': {
        const m = recordMessage(data);
        if (m) this.append(m);
        break;
      }
      case 'execution:start':
        if (mine) { this.liveBubble(data.turn); this.setRunning(true); }
        break;
      case 'content_block:delta':
        if (mine && data.kind === 'text') {
          const live = this.liveBubble(data.turn);
          if (!live.stale) live.text.append(document.createTextNode(data.delta));
        }
        break;
      case 'tool:pre':
        if (mine) this.liveTool(data);
        break;
      case 'tool:post': case 'tool:error':
        if (mine) this.liveToolDone(data, name === 'tool:error');
        break;
      case 'execution:end':
        if (mine) {
          if (this.live) { this.live.el.remove(); this.live = null; }
          this.setRunning(false);
          this.refresh();
        }
        break;
      case 'status': case 'meta':
        this.refresh();
        break;
      default:
    }
  }

  /** A tool call the turn is running, shown in the live bubble until its
   * result's record arrives. */
  liveTool(data) {
    const live = this.liveBubble(data.turn);
    const el = h('details', { class: 'tool running', dataset: { call: data.call_id || '' } },
      h('summary', {}, 'Running tool: ', h('code', {}, data.tool_name || '?'), '…'),
      h('pre', {}, JSON.stringify(data.tool_input ?? {}, null, 2)));
    live.el.insertBefore(el, live.text);
  }

  liveToolDone(data, failed) {
    if (!this.live) return;
    const el = [...this.live.el.querySelectorAll('details.tool.running')].find((d) => d.dataset.call === (data.call_id || ''));
    if (!el) return;
    el.classList.remove('running');
    if (failed) el.classList.add('error');
    el.querySelector('summary').replaceChildren(failed ? 'Tool failed: ' : 'Tool done: ', h('code', {}, data.tool_name || '?'));
  }

  onReconnect() {
    // Deltas sent while the connection was down are lost; the answer's
    // record (replayed after Last-Event-ID) replaces what was streamed.
    if (this.live) { this.live.stale = true; this.live.el.querySelector('.typing').textContent = 'reconnected, catching up…'; }
  }

  setRunning(running) {
    this.running = running;
    this.cancelButton.disabled = !running;
    this.status.replaceChildren(badge(this.session.status, running));
  }

  /** Reloads the session's status and name (whether a turn runs comes
   * from the stream's execution events). */
  async refresh() {
    try {
      this.session = await api('GET', this.path());
      this.titleEl.textContent = this.session.name || this.session.sessionId;
      this.setRunning(this.running);
    } catch { /* deleted: the next action says so */ }
  }

  async send() {
    const content = this.prompt.value.trim();
    if (!content) return;
    try {
      // A new session takes prompts once started.
      if (this.session.status === 'created') { await api('POST', this.path('/start')); this.session.status = 'active'; }
      const r = await api('POST', this.path(`/send-message?multitask=${this.multitask.value}`), { content, branch: this.branch });
      this.prompt.value = '';
      if (r.status === 'queued') notice(`Queued (position ${r.position ?? 1})`);
    } catch (e) { notice(e.message, 'error'); }
  }

  async cancel() {
    try {
      const r = await api('POST', this.path(`/cancel?branch=${encodeURIComponent(this.branch)}`));
      notice(r.cancelled ? 'Turn cancelled' : 'No turn was running');
    } catch (e) { notice(e.message, 'error'); }
  }

  async lifecycle(action) {
    if (action === 'terminate' && !(await confirmDialog('Terminate this session? A running turn is cancelled.', 'Terminate'))) return;
    let body;
    if (action === 'fail') {
      const why = await promptDialog('Why did it fail?', '', 'Mark failed');
      if (why === null) return;
      body = { errorMessage: why || 'marked failed in the web UI' };
    }
    try { await api('POST', this.path(`/${action}`), body); this.refresh(); notice(`Session ${action}ed`); } catch (e) { notice(e.message, 'error'); }
  }

  async rename() {
    const name = await promptDialog('New name', this.session.name || '');
    if (name === null) return;
    try { await api('PATCH', this.path(), { name }); this.refresh(); } catch (e) { notice(e.message, 'error'); }
  }

  async fork(turn) {
    try {
      const s = await api('POST', this.path('/fork'), { turn });
      notice(`Forked at turn ${turn}`);
      location.hash = `#/s/${encodeURIComponent(s.sessionId)}`;
    } catch (e) { notice(e.message, 'error'); }
  }
}

customElements.define('weft-session', WeftSession);
