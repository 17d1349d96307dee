// chromium.mjs -- Debian's headless Chromium (/usr/bin/chromium, or HERALD_CHROMIUM) through
// playwright-core, which never downloads a browser: one fresh profile directory per launch,
// removed when it closes.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.HERALD_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-quic'];

/** Launches Chromium with a fresh profile (extra command-line args, a viewport when given).
 *  Resolves with {context, close()}: close() ends the browser and removes its profile. */
export async function launchChromium({ args = [], viewport } = {}) {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`);
  const profile = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: [...ARGS, ...args], timeout: 30000,
      ...(viewport ? { viewport } : {}),
    });
    return {
      context,
      async close() {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}
