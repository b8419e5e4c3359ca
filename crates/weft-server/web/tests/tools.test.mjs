// Tool calls in the live view: while the turn runs its tool, the live
// bubble shows the call (name and arguments); then the recorded call and
// result are collapsible blocks of the transcript, and the chart counts
// the turn's two responses as one turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { daemon, launch } from './support.mjs';

test('a tool call streams live, then is recorded with its result', async () => {
  const d = await daemon({
    responses: [
      { tool_calls: [{ name: 'read_file', arguments: { path: 'script.json', limit: 2 } }], usage: { input_tokens: 100, output_tokens: 10 } },
      { text: 'I read the script.', usage: { input_tokens: 150, output_tokens: 5 }, delta_delay_ms: 30 },
    ],
  });
  const browser = await launch();
  try {
    const s = await d.api('POST', '/sessions/', { name: 'tools' });
    const page = await browser.newPage();
    await page.goto(`${d.base}/#/s/${s.sessionId}`);
    await page.locator('.conn.open').waitFor();
    await page.evaluate(() => {
      window.__running = [];
      new MutationObserver(() => {
        for (const el of document.querySelectorAll('.msg.live details.tool')) {
          const t = el.querySelector('summary').textContent;
          if (!window.__running.includes(t)) window.__running.push(t);
        }
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.getByLabel('Prompt').fill('Read the script');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('.msg.assistant:not(.live) .md', { hasText: 'I read the script.' }).waitFor();
    const running = await page.evaluate(() => window.__running);
    // The call is in the live bubble before its record arrives (running,
    // or already done when both events came in one chunk).
    assert.ok(running.some((t) => t.startsWith('Tool done: read_file')), `the live bubble showed the call and its end: ${JSON.stringify(running)}`);
    const call = page.locator('.msg:not(.live) details.tool summary', { hasText: 'Tool call: read_file' });
    await call.waitFor();
    const result = page.locator('.msg:not(.live) details.tool summary', { hasText: 'Tool result' });
    await result.first().click();
    assert.match(await page.locator('.msg:not(.live) details.tool[open] pre').first().textContent(), /responses/);
    // One turn in the chart: both responses' tokens.
    const bars = page.locator('svg.chart rect');
    await bars.first().waitFor();
    assert.match(await page.locator('svg.chart').innerHTML(), /turn 1/);
    assert.doesNotMatch(await page.locator('svg.chart').innerHTML(), /turn 2/);
    await page.close();
  } finally {
    await browser.close();
    await d.stop();
  }
});
