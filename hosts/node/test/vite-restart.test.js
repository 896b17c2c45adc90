// The Vite plugin across restarts, with real Vite in this process: Vite
// builds the new server (running `configureServer` again) before it closes
// the old one, so the new server must take the claim over from the old,
// not find it held. After `server.restart()` and after an edit of the
// config file the PID file still names this process, its lock is still
// held, and Vite logged no error; closing releases both, in middleware
// mode too (no HTTP server).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { packageDir } from './package.js';

const here = dirname(fileURLToPath(import.meta.url));
// Vite itself: from the project the package was installed into, else ours.
const viteHome = process.env.PIDMAN_NODE_INSTALLED ?? join(here, '..');
const vite = await import(pathToFileURL(createRequire(join(viteHome, 'package.json')).resolve('vite')).href);
const { default: pidman } = await import(pathToFileURL(join(packageDir, 'vite.js')).href);
const fsExt = createRequire(join(packageDir, 'index.js')).resolve('fs-ext');

function freePort() {
  return new Promise((resolve) => {
    const probe = netServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A project with Vite and this package in its node_modules (as a user's). */
function project() {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-vite-restart-')));
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>pidman</title>');
  writeFileSync(join(root, 'package.json'), '{"type": "module"}');
  mkdirSync(join(root, 'node_modules'));
  symlinkSync(join(viteHome, 'node_modules', 'vite'), join(root, 'node_modules', 'vite'));
  symlinkSync(packageDir, join(root, 'node_modules', 'pidman-wasm'));
  return root;
}

/** A Vite logger that keeps every line, by level. */
function recorder() {
  const lines = { info: [], warn: [], error: [] };
  const logger = {
    hasWarned: false,
    info: (msg) => lines.info.push(msg),
    warn: (msg) => lines.warn.push(msg),
    warnOnce: (msg) => lines.warn.push(msg),
    error: (msg) => lines.error.push(String(msg)),
    clearScreen() {},
    hasErrorLogged: () => false,
  };
  return { lines, logger };
}

const pidFileOf = (root) => join(root, 'node_modules', '.vite', 'dev-server.pid');
const read = (file) => (existsSync(file) ? readFileSync(file, 'utf8') : null);

/** Whether another process finds `<pid-file>.lock` held: flock(LOCK_EX |
 *  LOCK_NB) from a child (a lock this process holds excludes it). */
function lockHeld(pidFile) {
  const lock = `${pidFile}.lock`;
  if (!existsSync(lock)) return false;
  const probe = spawnSync(process.execPath, ['-e', `
    const fd = require('node:fs').openSync(process.argv[2], 'r');
    try { require(process.argv[1]).flockSync(fd, 'exnb'); process.stdout.write('free'); }
    catch (e) { process.stdout.write(e.code); }`, fsExt, lock], { encoding: 'utf8' });
  assert.ok(['free', 'EAGAIN', 'EWOULDBLOCK'].includes(probe.stdout), probe.stdout + probe.stderr);
  return probe.stdout !== 'free';
}

/** This process's claim, whole: the file names it and the lock is held. */
function assertClaimed(root, when) {
  assert.equal(read(pidFileOf(root)), String(process.pid), `the PID file names this process ${when}`);
  assert.equal(lockHeld(pidFileOf(root)), true, `the lock is held ${when}`);
}

function assertReleased(root) {
  assert.equal(read(pidFileOf(root)), null, 'the PID file is removed');
  assert.equal(lockHeld(pidFileOf(root)), false, 'the lock is free');
}

function assertQuiet(lines) {
  assert.deepEqual(lines.error, [], 'Vite logged no error (no "server restart failed")');
  assert.deepEqual(lines.warn.filter((l) => /pidman/.test(l)), [], 'no warning from pidman');
}

test('server.restart() keeps the claim; close releases it', async () => {
  const root = project();
  const { lines, logger } = recorder();
  const server = await vite.createServer({
    root, configFile: false, customLogger: logger,
    server: { port: await freePort(), strictPort: true, host: '127.0.0.1' },
    plugins: [pidman()],
  });
  try {
    await server.listen();
    assertClaimed(root, 'once it listens');
    await server.restart();
    assertQuiet(lines);
    assert.ok(lines.info.some((l) => /server restarted/.test(l)), lines.info.join('\n'));
    assertClaimed(root, 'after a restart');
    await server.restart();
    assertQuiet(lines);
    assertClaimed(root, 'after a second restart');
  } finally {
    await server.close();
  }
  assertReleased(root);
});

test('an edit of the config file restarts the server with the claim kept', async () => {
  const root = project();
  const config = join(root, 'vite.config.js');
  const source = (n) => "import pidman from 'pidman-wasm/vite';\n"
    + `export default { plugins: [pidman()], server: { host: '127.0.0.1', strictPort: true } }; // edit ${n}\n`;
  writeFileSync(config, source(0));
  const { lines, logger } = recorder();
  const server = await vite.createServer({
    root, configFile: config, customLogger: logger, server: { port: await freePort() },
  });
  try {
    await server.listen();
    assertClaimed(root, 'once it listens');
    for (let edit = 1; edit <= 2; edit += 1) {
      const before = lines.info.filter((l) => /server restarted/.test(l)).length;
      writeFileSync(config, source(edit));
      for (let i = 0; lines.info.filter((l) => /server restarted/.test(l)).length === before; i += 1) {
        assert.deepEqual(lines.error, [], 'Vite logged no error (no "server restart failed")');
        assert.ok(i < 200, `no restart after edit ${edit}: ${lines.info.join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assertQuiet(lines);
      assertClaimed(root, `after edit ${edit}`);
    }
  } finally {
    await server.close();
  }
  assertReleased(root);
});

test('middleware mode: the claim lasts through a restart and ends when the server closes', async () => {
  const root = project();
  const { lines, logger } = recorder();
  const server = await vite.createServer({
    root, configFile: false, customLogger: logger, appType: 'custom',
    // No HTTP server, and no WebSocket server of its own either.
    server: { middlewareMode: true, ws: false },
    plugins: [pidman()],
  });
  let closed = false;
  try {
    assertClaimed(root, 'once created');
    await server.restart();
    assertQuiet(lines);
    assertClaimed(root, 'after a restart');
    await server.close();
    closed = true;
    assertReleased(root);
  } finally {
    if (!closed) await server.close();
  }
});
