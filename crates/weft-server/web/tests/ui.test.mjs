// The web UI's main flow in Chromium against a real daemon: list → open a
// session → send a prompt and watch the answer stream token by token →
// cancel a slow turn → fork at turn 1 → split a branch and see both →
// search finds a word; the phone layout; a daemon with a token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { daemon, launch, docs, recordTexts } from './support.mjs';

const ANSWER = 'The quick brown fox jumps over the lazy dog while weft streams every word';
const SLOW = Array.from({ length: 120 }, (_, i) => `slow${i}`).join(' ');
let d;
let browser;

before(async () => {
  d = await daemon({
    responses: [
      { text: ANSWER, delta_delay_ms: 120 },
      { text: SLOW, delta_delay_ms: 250 },
      { text: 'A third answer with ```code```', delta_delay_ms: 5 },
    ],
  });
  browser = await launch();
  // Other sessions, for the list (newest first).
  for (const name of ['older one', 'older two']) await d.api('POST', '/sessions/', { name });
});

after(async () => {
  await browser?.close();
  await d?.stop();
});

test('list, open, stream, cancel, fork, split, search', async () => {
  const demo = await d.api('POST', '/sessions/', { name: 'demo session' });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const outside = [];
  page.on('request', (r) => { if (!r.url().startsWith(d.base)) outside.push(r.url()); });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  // The list, newest first.
  await page.goto(d.base);
  const rows = page.locator('.session-row .name');
  await rows.first().waitFor();
  assert.deepEqual(await rows.allTextContents(), ['demo session', 'older two', 'older one']);
  await page.screenshot({ path: docs('ui-sessions.png') });

  // Open it.
  await rows.first().click();
  await page.waitForURL(`**/#/s/${demo.sessionId}`);
  await page.locator('.conn.open').waitFor();

  // Send a prompt: the answer streams word by word, then is the record.
  await recordTexts(page, '.msg.live .live-text');
  await page.getByLabel('Prompt').fill('Tell me about the fox');
  await page.getByRole('button', { name: 'Send' }).click();
  const answer = page.locator('.msg.assistant:not(.live) .md');
  await answer.first().waitFor();
  assert.equal((await answer.first().textContent()).trim(), ANSWER);
  const texts = await page.evaluate(() => window.__texts.filter((t) => t));
  assert.ok(texts.length >= 3, `the answer appeared in ${texts.length} steps: ${JSON.stringify(texts)}`);
  for (let i = 1; i < texts.length; i++) {
    assert.ok(texts[i].startsWith(texts[i - 1]) && texts[i].length > texts[i - 1].length, `step ${i} grows: ${JSON.stringify(texts)}`);
  }
  assert.ok(ANSWER.startsWith(texts[texts.length - 1]));
  assert.equal(await page.locator('.msg.user').count(), 1);
  await page.locator('svg.chart rect').first().waitFor();

  // A slow turn, cancelled while it streams.
  await page.getByLabel('Prompt').fill('Now take your time');
  await page.getByRole('button', { name: 'Send' }).click();
  const live = page.locator('.msg.live .live-text');
  await page.waitForFunction(() => (document.querySelector('.msg.live .live-text')?.textContent || '').includes('slow2'));
  await page.getByRole('button', { name: 'Cancel turn' }).click();
  await page.getByText('Turn cancelled').waitFor();
  await live.waitFor({ state: 'detached' });
  await page.waitForFunction(() => document.querySelector('.page-head .badge')?.textContent === 'active');
  assert.ok(await page.getByRole('button', { name: 'Cancel turn' }).isDisabled());
  const all = (await page.locator('.transcript').textContent());
  assert.ok(!all.includes('slow119'), 'the cancelled turn did not finish');
  await page.screenshot({ path: docs('ui-session.png'), fullPage: true });

  // Fork at turn 1: a new session with turn 1 only.
  await page.getByRole('button', { name: 'Fork at turn 1' }).click();
  await page.waitForURL((u) => !u.hash.includes(demo.sessionId));
  await page.getByText(/fork of/).waitFor();
  await page.locator('.msg.assistant').first().waitFor();
  assert.equal(await page.locator('.msg.user').count(), 1);
  assert.equal((await page.locator('.msg.assistant .md').first().textContent()).trim(), ANSWER);
  const forkId = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  assert.equal((await d.api('GET', `/sessions/${forkId}`)).forkedFrom.sessionId, demo.sessionId);

  // Branches: split main and see both side by side.
  await page.getByRole('link', { name: 'Branches' }).click();
  await page.locator('.column').first().waitFor();
  assert.equal(await page.locator('.column').count(), 1);
  await page.getByRole('button', { name: 'Split' }).click();
  const name = page.getByRole('dialog').getByRole('textbox');
  await name.fill('alt');
  await page.getByRole('dialog').getByRole('button', { name: 'Split' }).click();
  await page.locator('.column[data-branch="alt"]').waitFor();
  assert.deepEqual(await page.locator('.column h2').allTextContents(), ['maindefault', 'alt']);
  assert.equal(await page.locator('.column[data-branch="alt"] .msg.assistant').count(), 1);
  await page.screenshot({ path: docs('ui-branches.png') });

  // State: set a key and see it by scope.
  await page.goto(`${d.base}/#/s/${encodeURIComponent(forkId)}/state`);
  await page.getByLabel('New key').fill('app:theme');
  await page.getByLabel('New value').fill('"dark"');
  await page.getByRole('button', { name: 'Set' }).click();
  await page.locator('tr[data-key="app:theme"]').waitFor();
  assert.equal((await d.api('GET', `/sessions/${forkId}/state/app:theme`)).value, 'dark');

  // Search finds a word of the streamed answer.
  await page.goto(`${d.base}/#/`);
  await page.getByLabel('Search messages').fill('lazy dog');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await page.locator('.results li').first().waitFor();
  const hits = await page.locator('.results li a').allTextContents();
  assert.ok(hits.includes('demo session'), `hits: ${hits}`);

  assert.deepEqual(outside, [], 'no request to another host');
  assert.deepEqual(errors, [], 'no script error');
  await page.close();
});

test('phone-sized layout', async () => {
  const s = await d.api('POST', '/sessions/', { name: 'on a phone' });
  await d.api('POST', `/sessions/${s.sessionId}/start`);
  await d.api('POST', `/sessions/${s.sessionId}/messages`, { role: 'user', content: 'Show me some **Markdown** and `code`:\n\n```rust\nfn main() { println!("hi"); }\n```' });
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await page.goto(`${d.base}/#/s/${s.sessionId}`);
  await page.locator('.msg .md pre .tok-k').first().waitFor();
  assert.equal(await page.locator('.msg .md strong').textContent(), 'Markdown');
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `no horizontal scrolling (${width}px)`);
  await page.screenshot({ path: docs('ui-phone.png') });
  // Keyboard: the prompt is reachable with Tab.
  await page.locator('body').focus();
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.getAttribute('aria-label') === 'Prompt');
  }
  assert.ok(reached, 'the prompt is reachable by keyboard');
  await page.close();
});

test('a daemon with a token: the page asks once and keeps it out of URLs', async () => {
  const secured = await daemon({ token: 'browser-secret' });
  try {
    await secured.api('POST', '/sessions/', { name: 'guarded' });
    const page = await browser.newPage();
    const urls = [];
    page.on('request', (r) => urls.push(r.url()));
    await page.goto(secured.base);
    await page.locator('#token-dialog input').fill('browser-secret');
    await page.locator('#token-dialog button').click();
    await page.locator('.session-row .name', { hasText: 'guarded' }).waitFor();
    await page.locator('.session-row .name').first().click();
    await page.locator('.conn.open').waitFor();
    assert.equal(await page.locator('#token-dialog').count(), 0, 'asked once');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('weft.token')), 'browser-secret');
    assert.ok(urls.every((u) => !u.includes('browser-secret')), 'the token is in no URL');
    await page.close();
  } finally {
    await secured.stop();
  }
});
