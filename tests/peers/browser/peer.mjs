// The browser peer: Debian's Chromium running LiveKit's own JS SDK (livekit-client), the client
// most people use instead of Parley, driven by playwright-core. Parley's tests and benches run it
// beside `parley` on the same server and the same PulseAudio.
//
//   node peer.mjs --url ws://… --token … [--tone HZ | --mic [--input-device NAME]] [--listen HZ]
//                 [--e2ee-key KEY] [--processing] [--seconds N]
//
// One JSON object per line on stdout: connected, published, subscribed, heard (every second per
// remote voice: dominant frequency, RMS, and the level at --listen), encryption_error, done, or
// error (then the exit status is 1).
//
// Chromium runs headful (headless Chromium opens no audio devices) on the $DISPLAY it is given,
// and its sound goes to PULSE_SERVER. Its playback follows PULSE_SINK; its "default" microphone,
// though, is the server's configured default source by name (PULSE_SOURCE is not used then, and
// a monitor there leaves Chromium a fake, beeping input), so --input-device picks the
// microphone whose PulseAudio description is NAME.

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string' },
    tone: { type: 'string' },
    mic: { type: 'boolean', default: false },
    'input-device': { type: 'string' },
    listen: { type: 'string' },
    'e2ee-key': { type: 'string' },
    processing: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '10' },
  },
});

function say(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function fail(message) {
  say({ event: 'error', message });
  process.exitCode = 1;
}

// What the page loads, from the installed packages (nothing is fetched from elsewhere).
const files = {
  '/': ['page.html', 'text/html'],
  '/page.js': ['page.js', 'text/javascript'],
  '/livekit-client.mjs': ['node_modules/livekit-client/dist/livekit-client.esm.mjs', 'text/javascript'],
  '/e2ee-worker.mjs': ['node_modules/livekit-client/dist/livekit-client.e2ee.worker.mjs', 'text/javascript'],
};

// A page on http://127.0.0.1 is a secure context: getUserMedia and E2EE's encoded transforms
// work there as on https.
function serve() {
  const server = http.createServer(async (request, response) => {
    const file = files[new URL(request.url, 'http://127.0.0.1').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': file[1] }).end(await readFile(path.join(here, file[0])));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  if (!options.url || !options.token) {
    fail('--url and --token are required');
    return;
  }
  if (!process.env.DISPLAY) {
    fail('no DISPLAY: the browser peer runs headful on an X display (headless Chromium has no audio devices)');
    return;
  }
  const server = await serve();
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.PARLEY_CHROMIUM || '/usr/bin/chromium',
    headless: false,
    args: [
      // Root (CI) cannot use Chromium's sandbox.
      '--no-sandbox',
      '--autoplay-policy=no-user-gesture-required',
      '--use-fake-ui-for-media-stream',
      '--disable-gpu',
    ],
  });
  const finish = async () => {
    await browser.close().catch(() => {});
    server.close();
  };
  try {
    const context = await browser.newContext();
    await context.grantPermissions(['microphone'], { origin });
    const page = await context.newPage();
    page.on('pageerror', (error) => say({ event: 'page_error', message: String(error) }));
    await page.exposeFunction('report', (event) => say(event));
    await page.goto(origin);
    await page.waitForFunction(() => typeof window.startPeer === 'function');
    const seconds = Number(options.seconds);
    await page.evaluate(
      (peer) => window.startPeer(peer),
      {
        url: options.url,
        token: options.token,
        tone: options.tone ? Number(options.tone) : null,
        mic: options.mic,
        inputDevice: options['input-device'] ?? null,
        listen: options.listen ? Number(options.listen) : null,
        e2eeKey: options['e2ee-key'] ?? null,
        processing: options.processing,
      },
    );
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    await page.evaluate(() => window.stopPeer());
    say({ event: 'done' });
  } catch (error) {
    fail(String(error?.message ?? error));
  } finally {
    await finish();
  }
}

main().catch((error) => fail(String(error?.message ?? error)));
