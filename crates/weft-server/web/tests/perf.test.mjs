// First load of the UI against a daemon holding 10,000 sessions
// (WEFT_PERF_SESSIONS): bytes transferred (must stay under 200 KB) and the
// time until the sessions list is shown (printed, not asserted: timings
// are figures, not tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { daemon, launch } from './support.mjs';

const COUNT = Number(process.env.WEFT_PERF_SESSIONS || 10000);
const LOADS = Number(process.env.WEFT_PERF_LOADS || 5);

/** One first load of the page: bytes, requests, time to the list shown. */
async function firstLoad(browser, base) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    let bytes = 0;
    let requests = 0;
    cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests++; });
    await page.goto(base);
    await page.locator('.session-row').first().waitFor();
    await page.waitForLoadState('networkidle');
    const interactive = await page.evaluate(() => performance.getEntriesByName('weft-interactive')[0]?.startTime);
    const list = await page.evaluate(() => performance.getEntriesByType('resource')
      .filter((r) => r.name.includes('/api/v1/sessions/?')).map((r) => ({ start: r.startTime, took: r.duration }))[0]);
    assert.equal(await page.locator('.session-row').count(), 25, 'the first page of the list');
    assert.ok(interactive > 0, 'the list marked when it was shown');
    return { bytes, requests, interactive, list };
  } finally {
    await context.close();
  }
}

test(`first load with ${COUNT} sessions`, async (t) => {
  const d = await daemon({ inMemory: true });
  const browser = await launch();
  try {
    const started = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < COUNT) {
        const i = next++;
        await d.api('POST', '/sessions/', { name: `session ${i}` });
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const seeded = (Date.now() - started) / 1000;

    // Several first loads, each in a fresh context with the cache off: the
    // median is the figure (one load on a shared machine is noise).
    const loads = [];
    for (let i = 0; i < LOADS; i++) loads.push(await firstLoad(browser, d.base));
    const times = loads.map((l) => l.interactive).sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    const { bytes, requests, list } = loads[0];
    const line = `first load against ${COUNT} sessions: ${(bytes / 1024).toFixed(1)} KB transferred in ${requests} requests, interactive after ${median.toFixed(0)} ms (median of ${LOADS} loads: ${times.map((x) => x.toFixed(0)).join(', ')}), the list requested after ${list?.start.toFixed(0)} ms and answered in ${list?.took.toFixed(0)} ms in the first load (seeded in ${seeded.toFixed(1)} s)`;
    console.log(line);
    t.diagnostic(line);
    writeFileSync(`${process.env.PLAYWRIGHT_DIR}/first-load.txt`, `${line}\n`);
    for (const l of loads) assert.ok(l.bytes < 200 * 1024, `${l.bytes} bytes: ${line}`);
  } finally {
    await browser.close();
    await d.stop();
  }
});
