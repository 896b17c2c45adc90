// What running the plugin in its own worker promises the caller's
// process: its waits never block the event loop (a timer keeps firing
// while killStaleProcess waits out a server that ignores SIGTERM for a
// while); it changes no process-wide state of the preview2 shim, which
// every other jco component of the process shares (its preopens); and the
// process still exits by itself, a claim held or not.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { load, packageDir } from './package.js';

const { PIDManager, Plugin } = await load('index.js');
const { LinuxBackend } = await load('linux.js');
// The shim as the package under test resolves it: the same module instance.
const shimFs = await import(pathToFileURL(
  createRequire(join(packageDir, 'index.js')).resolve('@bytecodealliance/preview2-shim/filesystem'),
).href);

const project = () => realpathSync(mkdtempSync(join(tmpdir(), 'pidman-worker-')));

/** A server that takes `ms` to stop after SIGTERM; resolves once it runs. */
async function slowToStop(ms) {
  const child = spawn(process.execPath, ['-e', `
    process.on('SIGTERM', () => setTimeout(() => process.exit(0), ${ms}));
    setInterval(() => {}, 1000);
    process.stdout.write('ready');`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((ok) => child.stdout.once('data', ok));
  return child;
}

test('a timer keeps firing while killStaleProcess waits for the process to go', async () => {
  const child = await slowToStop(1200);
  const exited = new Promise((ok) => child.once('exit', ok));
  let ticks = 0;
  let last = performance.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    ticks += 1;
  }, 10);
  try {
    const start = performance.now();
    assert.equal(await PIDManager.killStaleProcess(child.pid, 5), true);
    const took = performance.now() - start;
    clearInterval(timer);
    longest = Math.max(longest, performance.now() - last);
    assert.ok(took >= 1000, `it waited for the server (${Math.round(took)} ms)`);
    assert.ok(longest < 500, `the event loop stalled for ${Math.round(longest)} ms`);
    assert.ok(ticks >= took / 10 / 4, `${ticks} ticks in ${Math.round(took)} ms`);
    await exited;
  } finally {
    clearInterval(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test("the shim's process-wide preopens are never changed", async () => {
  // Another jco component's preopen, set the shim's documented way.
  const other = project();
  shimFs._setPreopens({ '/data': other });
  try {
    const before = shimFs._getPreopens();
    const root = project();
    const pidFile = join(root, 'run', '.bengal.pid');
    await PIDManager.writePidFile(pidFile);
    assert.equal(await PIDManager.checkStalePid(pidFile), null);
    // The plugin on this thread too (Plugin, as tests and other backends use it).
    const plugin = await Plugin.load();
    assert.equal(await plugin.call(new LinuxBackend(), root, 'writePidFile', join(root, 'x.pid'), 4242), 4242);
    assert.equal(readFileSync(join(root, 'x.pid'), 'utf8'), '4242');
    const after = shimFs._getPreopens();
    assert.equal(after.length, 1);
    assert.equal(after[0][1], '/data');
    assert.equal(after[0][0], before[0][0], 'the same descriptor, untouched');
  } finally {
    shimFs._clearPreopens();
  }
});

test('a process using pidman exits by itself, with a claim held', async () => {
  const root = project();
  const pidFile = join(root, '.bengal.pid');
  const index = pathToFileURL(join(packageDir, 'index.js')).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    import { PIDManager } from ${JSON.stringify(index)};
    await PIDManager.checkStalePid(${JSON.stringify(pidFile)});
    const claim = await PIDManager.acquire(${JSON.stringify(pidFile)});
    process.stdout.write(String(claim.claimed));`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code, signal] = await new Promise((ok) => child.once('exit', (c, s) => ok([c, s])));
  clearTimeout(timer);
  assert.equal(signal, null, 'it exited by itself (not killed after 10 s)');
  assert.equal(code, 0);
  assert.equal(out, 'true');
  assert.ok(existsSync(pidFile), 'an unreleased claim leaves its file (its lock ended with the process)');
  const next = await PIDManager.acquire(pidFile);
  assert.equal(next.claimed, true, 'the dead claimant is taken over');
  assert.equal(await next.release(), true);
});
