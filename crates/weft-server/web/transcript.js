// Rendering of transcript messages: Markdown text, folded thinking,
// collapsible tool calls and results, token usage per response and per turn.
import { h, when } from './dom.js';
import { renderMarkdown } from './markdown.js';

/** The blocks of a message's `content` (a string or blocks). */
export function blocks(content) {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  return Array.isArray(content) ? content : [];
}

/** The text of a message (its text blocks). */
export function textOf(content) {
  return blocks(content).filter((b) => b.type === 'text').map((b) => b.text).join('');
}

function markdown(text) {
  const div = h('div', { class: 'md' });
  div.innerHTML = renderMarkdown(text); // renderMarkdown escapes all source text
  return div;
}

function block(b) {
  switch (b.type) {
    case 'text': return markdown(b.text);
    case 'thinking': return h('details', { class: 'thinking' }, h('summary', {}, 'Thinking'), h('div', { class: 'pre' }, b.thinking));
    case 'tool_call': return h('details', { class: 'tool' },
      h('summary', {}, 'Tool call: ', h('code', {}, b.name)),
      h('pre', {}, JSON.stringify(b.arguments, null, 2)));
    case 'tool_result': return h('details', { class: `tool ${b.is_error ? 'error' : ''}` },
      h('summary', {}, b.is_error ? 'Tool error' : 'Tool result', ` (${(b.output || '').length} chars)`),
      h('pre', {}, b.output || ''));
    case 'image': return h('p', { class: 'muted' }, '[image]');
    default: return h('pre', {}, JSON.stringify(b));
  }
}

/** One message as an article; `actions` are extra buttons for its header. */
export function messageView(m, actions = []) {
  const usage = m.usage
    ? h('span', { class: 'usage', title: 'Tokens of this response' },
      `${m.usage.input_tokens ?? m.usage.inputTokens ?? 0} in · ${m.usage.output_tokens ?? m.usage.outputTokens ?? 0} out`)
    : null;
  return h('article', { class: `msg ${m.role}`, dataset: { seq: m.seq }, id: `m${m.seq}` },
    h('header', {},
      h('span', { class: 'role' }, m.sender && m.role !== 'user' ? `${m.role} · ${m.sender}` : m.role),
      h('time', { datetime: m.timestamp }, when(m.timestamp)),
      usage, actions),
    h('div', { class: 'body' }, blocks(m.content).map(block)));
}

/** The token figures of each turn of `messages` (a turn: a user message
 * and the responses up to the next one), for the chart. */
export function usagePerTurn(messages) {
  const turns = [];
  let turn = null;
  for (const m of messages) {
    if (m.role === 'user' || !turn) {
      turn = { label: `turn ${turns.length + 1}`, input: 0, output: 0, counted: false };
      turns.push(turn);
    }
    if (m.role === 'assistant' && m.usage) {
      turn.input += m.usage.input_tokens ?? m.usage.inputTokens ?? 0;
      turn.output += m.usage.output_tokens ?? m.usage.outputTokens ?? 0;
      turn.counted = true;
    }
  }
  return turns.filter((t) => t.counted).map(({ label, input, output }) => ({ label, input, output }));
}

/** A record of the session log (`message` SSE event) as a transcript
 * message, or null when it is not a message. */
export function recordMessage(record) {
  if (!record || !record.kind || record.kind.type !== 'message') return null;
  const m = record.kind.data;
  const b = m.content || [];
  const textOnly = b.every((x) => x.type === 'text');
  return {
    seq: record.seq, role: m.role, branch: m.branch, sender: m.sender, timestamp: m.timestamp || record.ts,
    content: textOnly ? b.map((x) => x.text).join('') : b, usage: m.usage || null, turn: record.turn,
  };
}
