// The Vite plugin with real Vite (from the npm registry): a dev server
// claims its project's PID file; a second one is refused, naming the first,
// or, with stopStale, stops it and serves; closing releases the file; after
// a SIGKILL the next start recovers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { packageDir } from './package.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, 'fixtures', 'vite-server.mjs');
const plugin = pathToFileURL(join(packageDir, 'vite.js')).href;
// Vite itself: from the project the package was installed into, else ours.
const viteHome = process.env.PIDMAN_NODE_INSTALLED ?? join(here, '..');

function freePort() {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function project() {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-vite-')));
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>pidman</title>');
  writeFileSync(join(root, 'package.json'), '{"type": "module"}');
  mkdirSync(join(root, 'node_modules'));
  // Vite resolves from the project: link the one under test.
  const vite = join(viteHome, 'node_modules', 'vite');
  spawn('ln', ['-s', vite, join(root, 'node_modules', 'vite')]);
  return root;
}

/** Start a dev server; resolves once it printed its first line. */
function start(root, port, stop = false) {
  const child = spawn(process.execPath, [fixture, root, String(port), stop ? 'stop' : ''], {
    env: { ...process.env, PIDMAN_VITE_PLUGIN: plugin },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const line = new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', () => resolve(out));
  });
  return { child, line, exited };
}

const pidFileOf = (root) => join(root, 'node_modules', '.vite', 'dev-server.pid');
const read = (file) => (existsSync(file) ? readFileSync(file, 'utf8') : null);

test('a second dev server is refused, naming the first; closing releases the file', async () => {
  const root = project();
  await new Promise((r) => setTimeout(r, 50));
  const first = start(root, await freePort());
  assert.match(await first.line, /^ready \d+/);
  assert.equal(read(pidFileOf(root)), String(first.child.pid));
  const second = start(root, await freePort());
  assert.match(await second.line, new RegExp(`refused .*PID ${first.child.pid}`));
  assert.equal((await second.exited).code, 1);
  first.child.stdin.write('close\n');
  assert.equal((await first.exited).code, 0);
  assert.equal(read(pidFileOf(root)), null, 'released when the server closed');
});

test('with stopStale the first is stopped and the second serves', async () => {
  const root = project();
  await new Promise((r) => setTimeout(r, 50));
  const first = start(root, await freePort());
  assert.match(await first.line, /^ready/);
  const second = start(root, await freePort(), true);
  assert.match(await second.line, /^ready/);
  // Vite handles SIGTERM itself (exit 0 or 143 = 128 + SIGTERM).
  const { code, signal } = await first.exited;
  assert.ok([0, 143].includes(code) || signal === 'SIGTERM', `the first dev server was stopped: ${code} ${signal}`);
  assert.equal(read(pidFileOf(root)), String(second.child.pid));
  second.child.stdin.write('close\n');
  await second.exited;
  assert.equal(read(pidFileOf(root)), null);
});

test('after a SIGKILL the next start recovers', async () => {
  const root = project();
  await new Promise((r) => setTimeout(r, 50));
  const killed = start(root, await freePort());
  assert.match(await killed.line, /^ready/);
  killed.child.kill('SIGKILL');
  await killed.exited;
  assert.equal(read(pidFileOf(root)), String(killed.child.pid), 'left behind');
  const next = start(root, await freePort());
  assert.match(await next.line, /^ready/);
  assert.equal(read(pidFileOf(root)), String(next.child.pid));
  next.child.stdin.write('close\n');
  await next.exited;
});
