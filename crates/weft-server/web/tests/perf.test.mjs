// First load of the UI against a daemon holding 10,000 sessions
// (WEFT_PERF_SESSIONS): bytes transferred (must stay under 200 KB) and the
// time until the sessions list is shown (printed, not asserted: timings
// are figures, not tests).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { daemon, launch } from './support.mjs';

const COUNT = Number(process.env.WEFT_PERF_SESSIONS || 10000);

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

    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    let bytes = 0;
    let requests = 0;
    cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests++; });
    await page.goto(d.base);
    await page.locator('.session-row').first().waitFor();
    await page.waitForLoadState('networkidle');
    const interactive = await page.evaluate(() => performance.getEntriesByName('weft-interactive')[0]?.startTime);
    const list = await page.evaluate(() => performance.getEntriesByType('resource')
      .filter((r) => r.name.includes('/api/v1/sessions/?')).map((r) => r.duration)[0]);
    assert.equal(await page.locator('.session-row').count(), 25, 'the first page of the list');
    assert.ok(interactive > 0, 'the list marked when it was shown');
    const line = `first load against ${COUNT} sessions: ${(bytes / 1024).toFixed(1)} KB transferred in ${requests} requests, interactive after ${interactive.toFixed(0)} ms, of which the list request ${list?.toFixed(0)} ms (seeded in ${seeded.toFixed(1)} s)`;
    console.log(line);
    t.diagnostic(line);
    writeFileSync(`${process.env.PLAYWRIGHT_DIR}/first-load.txt`, `${line}\n`);
    assert.ok(bytes < 200 * 1024, line);
  } finally {
    await browser.close();
    await d.stop();
  }
});
