// The Node host on the real OS: a fake Bengal server (argv: bengal serve)
// on loopback, started and reaped by the test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { load } from './package.js';

const { PIDManager } = await load('index.js');

const fixture = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'tests', 'fixtures', 'bengal');

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

async function startServer(port) {
  const child = spawn(fixture, ['serve', '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((ok) => child.stdout.once('data', ok));
  return child;
}

test('a live server is found, reported, and stopped', async () => {
  const root = mkdtempSync(join(tmpdir(), 'pidman-node-'));
  const port = await freePort();
  const server = await startServer(port);
  const exited = new Promise((ok) => server.once('exit', ok));
  try {
    const pidFile = PIDManager.getPidFile(root);
    writeFileSync(pidFile, `${server.pid}\n`);
    assert.equal(await PIDManager.isBengalProcess(server.pid), true);
    assert.equal(await PIDManager.checkStalePid(pidFile), server.pid);
    assert.equal(await PIDManager.getProcessOnPort(port), server.pid);
    assert.equal(await PIDManager.killStaleProcess(server.pid, 2), true);
    await exited;
  } finally {
    server.kill('SIGKILL');
  }
});

test('garbage and dead PIDs are removed; PID 1 is refused', async () => {
  const root = mkdtempSync(join(tmpdir(), 'pidman-node-'));
  const pidFile = PIDManager.getPidFile(root);
  writeFileSync(pidFile, '0x1F');
  assert.equal(await PIDManager.checkStalePid(pidFile), null);
  assert.equal(existsSync(pidFile), false);
  const dead = spawnSync('true').pid;
  writeFileSync(pidFile, String(dead));
  assert.equal(await PIDManager.checkStalePid(pidFile), null);
  assert.equal(existsSync(pidFile), false);
  assert.equal(await PIDManager.killStaleProcess(1), false);
});

test('writePidFile writes this process, creating the directory', async () => {
  const root = mkdtempSync(join(tmpdir(), 'pidman-node-'));
  const pidFile = join(root, 'run', '.bengal.pid');
  await PIDManager.writePidFile(pidFile);
  assert.equal(readFileSync(pidFile, 'utf8'), String(process.pid));
});
