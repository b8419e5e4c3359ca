// The tokens-per-turn chart: an SVG bar chart built in the page (input and
// output tokens of each turn, its responses summed, stacked), no chart library.

const NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A chart of `turns` = [{label, input, output}] (empty: null). */
export function tokensChart(turns) {
  if (!turns.length) return null;
  const width = 600;
  const height = 120;
  const pad = 24;
  const max = Math.max(1, ...turns.map((t) => t.input + t.output));
  const bar = Math.max(2, Math.min(40, (width - pad) / turns.length - 4));
  const svg = el('svg', { viewBox: `0 0 ${width} ${height + 18}`, class: 'chart', role: 'img',
    'aria-label': `Tokens per turn: ${turns.map((t) => t.input + t.output).join(', ')}` });
  svg.append(el('text', { x: 0, y: 10, class: 'axis' }, `${max} tokens`));
  svg.append(el('line', { x1: pad, y1: height, x2: width, y2: height, class: 'axis-line' }));
  turns.forEach((t, i) => {
    const x = pad + 4 + i * (bar + 4);
    const hIn = (t.input / max) * (height - 16);
    const hOut = (t.output / max) * (height - 16);
    const g = el('g', {});
    g.append(el('title', {}, `${t.label}: ${t.input} in, ${t.output} out`));
    g.append(el('rect', { x, y: height - hIn, width: bar, height: hIn, class: 'bar-in' }));
    g.append(el('rect', { x, y: height - hIn - hOut, width: bar, height: hOut, class: 'bar-out' }));
    if (turns.length <= 30) g.append(el('text', { x: x + bar / 2, y: height + 14, class: 'axis', 'text-anchor': 'middle' }, String(i + 1)));
    svg.append(g);
  });
  return svg;
}
