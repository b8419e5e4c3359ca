// A small Markdown renderer and code highlighter. Safety first: every piece
// of source text is HTML-escaped before any markup is added, links keep
// only http(s), mailto and in-page targets, and images are shown as links
// (the page loads nothing from other hosts).

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESC[c]);
}

const KEYWORDS = new Set(('as async await break case catch class const continue def default del do elif else enum ' +
  'export extends false fn for from func function go if impl import in interface let loop match mod mut new nil ' +
  'None null package pub return self Self static struct super switch this throw true True False try type typeof ' +
  'use var void where while with yield').split(' '));

const TOKEN = /(\/\/[^\n]*|#[^\n]*|\/\*[\s\S]*?\*\/)|("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`)|(\b\d[\d_.xXa-fA-F]*\b)|([A-Za-z_][A-Za-z0-9_]*)/g;

/** Highlights code: comments, strings, numbers and keywords get spans. */
export function highlight(code, lang = '') {
  const hashComments = /^(py|python|sh|bash|shell|yaml|yml|toml|rb|ruby|r)$/i.test(lang);
  let out = '';
  let last = 0;
  for (const m of code.matchAll(TOKEN)) {
    const [text, comment, string, number, word] = m;
    if (comment && comment.startsWith('#') && !hashComments) {
      continue;
    }
    out += escapeHtml(code.slice(last, m.index));
    last = m.index + text.length;
    let cls = null;
    if (comment) cls = 'c';
    else if (string) cls = 's';
    else if (number) cls = 'n';
    else if (word && KEYWORDS.has(word)) cls = 'k';
    out += cls ? `<span class="tok-${cls}">${escapeHtml(text)}</span>` : escapeHtml(text);
  }
  return out + escapeHtml(code.slice(last));
}

function safeUrl(url) {
  const u = url.trim();
  return /^(https?:|mailto:|#|\/)/i.test(u) ? u : null;
}

/** Inline markup of one escaped-on-the-way line of text. */
function inline(text) {
  const parts = [];
  // Code spans first: their content is not parsed further.
  let rest = text;
  const codeRe = /`([^`]+)`/;
  let m;
  while ((m = codeRe.exec(rest))) {
    parts.push(spans(rest.slice(0, m.index)));
    parts.push(`<code>${escapeHtml(m[1])}</code>`);
    rest = rest.slice(m.index + m[0].length);
  }
  parts.push(spans(rest));
  return parts.join('');
}

function spans(raw) {
  let s = escapeHtml(raw);
  // Links and images (shown as links): [text](url)
  s = s.replace(/!?\[([^\]]*)\]\(([^)\s]+)\)/g, (all, label, url) => {
    const decoded = url.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
    const safe = safeUrl(decoded);
    return safe ? `<a href="${escapeHtml(safe)}" rel="noopener noreferrer" target="_blank">${label || escapeHtml(safe)}</a>` : label;
  });
  s = s.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
  s = s.replace(/(^|[^*\w])\*([^*\s][^*]*)\*/g, '$1<em>$2</em>');
  s = s.replace(/(^|\W)_([^_\s][^_]*)_(?=\W|$)/g, '$1<em>$2</em>');
  return s;
}

/** Renders Markdown to HTML (safe to assign to innerHTML). */
export function renderMarkdown(src) {
  const lines = String(src ?? '').replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  let para = [];
  let list = null; // {tag, items}
  const flushPara = () => { if (para.length) { out.push(`<p>${para.map(inline).join('<br>')}</p>`); para = []; } };
  const flushList = () => {
    if (list) { out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join('')}</${list.tag}>`); list = null; }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)\s*([\w+-]*)\s*$/.exec(line);
    if (fence) {
      flushPara(); flushList();
      const code = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) code.push(lines[i++]);
      const lang = fence[2] || '';
      out.push(`<pre><code${lang ? ` data-lang="${escapeHtml(lang)}"` : ''}>${highlight(code.join('\n'), lang)}</code></pre>`);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    const quote = /^>\s?(.*)$/.exec(line);
    if (!line.trim()) { flushPara(); flushList(); }
    else if (heading) { flushPara(); flushList(); const n = Math.min(heading[1].length + 2, 6); out.push(`<h${n}>${inline(heading[2])}</h${n}>`); }
    else if (bullet || numbered) {
      flushPara();
      const tag = bullet ? 'ul' : 'ol';
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push((bullet || numbered)[1]);
    } else if (quote) { flushPara(); flushList(); out.push(`<blockquote>${inline(quote[1])}</blockquote>`); }
    else if (/^(-{3,}|\*{3,})$/.test(line.trim())) { flushPara(); flushList(); out.push('<hr>'); }
    else { flushList(); para.push(line); }
  }
  flushPara(); flushList();
  return out.join('\n');
}
