// The server is a tree, on real processes: a shell wrapper whose child
// listens on loopback is stopped whole through the wrapper's PID. The test
// reaps what it starts, by PID only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { load } from './package.js';

const { PIDManager } = await load('index.js');
const { LinuxBackend, parseStat } = await load('linux.js');

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/**
 * Whether something listens on 127.0.0.1:`port`: it cannot be bound (Node
 * binds with SO_REUSEADDR). Not a connect: with nothing listening on an
 * ephemeral port, a connect can meet itself (TCP simultaneous open).
 */
function listening(port) {
  return new Promise((ok) => {
    const probe = createServer();
    probe.once('error', () => ok(true));
    probe.listen(port, '127.0.0.1', () => probe.close(() => ok(false)));
  });
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** The start token of `pid`, or null once it is gone. */
function startToken(pid) {
  try { return new LinuxBackend().inspect(pid).startToken; } catch { return null; }
}

/** Exited: no such process, or a zombie nobody has reaped yet. */
const gone = (pid) => new LinuxBackend().state(pid) !== 'running';

test('a wrapper and its listening child are stopped together', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pidman-node-tree-'));
  const script = join(dir, 'serve.cjs');
  writeFileSync(script, "require('node:net').createServer().listen(Number(process.argv[2]), '127.0.0.1');\n");
  const port = await freePort();
  // `sh -c 'node serve.cjs PORT & wait'`: the shell waits, its child listens.
  const wrapper = spawn('sh', ['-c', '"$0" "$1" "$2" & wait', process.execPath, script, String(port)], { stdio: 'ignore' });
  const exited = new Promise((ok) => wrapper.once('exit', (code, signal) => ok(signal)));
  let child = null;
  try {
    for (let i = 0; !(await listening(port)); i += 1) {
      assert.ok(i < 400 && wrapper.exitCode === null, 'the server did not start');
      await sleep(50);
    }
    const holder = await PIDManager.getProcessOnPort(port);
    assert.ok(holder !== null && holder !== wrapper.pid);
    child = { pid: holder, token: startToken(holder) };

    const plan = await PIDManager.planStop(wrapper.pid);
    assert.deepEqual(plan.map((m) => m.identity.pid), [wrapper.pid, holder]);
    assert.equal(plan[1].parent, wrapper.pid);
    assert.match(plan[1].command, /serve\.cjs/);
    assert.ok(!gone(wrapper.pid) && !gone(holder), 'plan signals nothing');
    const described = await PIDManager.describePort(port);
    assert.equal(described.tag, 'held');
    assert.deepEqual(described.val.lineage.slice(0, 2).map((e) => e.pid), [holder, wrapper.pid]);

    assert.equal(await PIDManager.killStaleProcess(wrapper.pid, 5), true);
    assert.equal(await exited, 'SIGTERM');
    assert.ok(gone(holder), 'the listening child is gone too');
    assert.equal(await listening(port), false);
    assert.equal(await PIDManager.getProcessOnPort(port), null);
    assert.equal((await PIDManager.describePort(port)).tag, 'free');
  } finally {
    if (wrapper.exitCode === null && wrapper.signalCode === null) wrapper.kill('SIGKILL');
    if (child && startToken(child.pid) === child.token) process.kill(child.pid, 'SIGKILL');
  }
});

test('a snapshot lists this process with its parent and group', () => {
  const backend = new LinuxBackend();
  const me = backend.snapshot().find((e) => e.pid === process.pid);
  assert.equal(me.parent, process.ppid);
  assert.equal(me.state, 'running');
  const info = backend.inspect(process.pid);
  assert.equal(me.startToken, info.startToken);
  assert.equal(me.group, info.group);
  assert.equal(info.parent, process.ppid);
});

test('a detached child leads its own session; this process does not share it', async () => {
  const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  try {
    await new Promise((ok, fail) => { child.once('spawn', ok); child.once('error', fail); });
    const backend = new LinuxBackend();
    assert.equal(backend.inspect(child.pid).session, child.pid);
    assert.notEqual(backend.inspect(process.pid).session, child.pid);
  } finally {
    child.kill('SIGKILL');
  }
});

test('a name that is not UTF-8 is read lossily', () => {
  const line = Buffer.from('77 (bad\xff) nm) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0\n', 'latin1');
  const s = parseStat(line.toString('utf8'));
  assert.deepEqual([s.name, s.state, s.parent, s.group, s.session, s.ticks], ['bad\ufffd) nm', 'S', 1, 77, 77, 12345n]);
});

// A threaded server whose main thread has ended while a worker thread
// serves (the repository's fixture, `bengal serve --main-exits`): /proc
// shows its main thread's state, `Z`, while the process runs and holds its
// port, as every threaded server (Node itself, Go, a threaded Python) is
// for a moment while it exits.
const FIXTURE = fileURLToPath(new URL('../../../tests/fixtures/bengal', import.meta.url));

test('a server whose main thread ended is alive until its last thread ends', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pidman-node-main-exits-'));
  const port = await freePort();
  const server = spawn('python3', [FIXTURE, 'serve', '--port', String(port), '--main-exits'], { stdio: 'ignore' });
  const exited = new Promise((ok) => server.once('exit', (code, signal) => ok(signal)));
  try {
    for (let i = 0; ; i += 1) {
      const mainEnded = parseStat(readFileSync(`/proc/${server.pid}/stat`, 'utf8')).state === 'Z';
      if (mainEnded && (await listening(port))) break;
      assert.ok(i < 1000 && server.exitCode === null, 'the server did not start');
      await sleep(20);
    }
    assert.equal(new LinuxBackend().state(server.pid), 'running');
    const pidFile = join(dir, '.bengal.pid');
    writeFileSync(pidFile, String(server.pid));
    assert.equal(await PIDManager.checkStalePid(pidFile), server.pid);
    assert.ok(existsSync(pidFile), "a live server's file is kept");
    assert.equal(await PIDManager.getProcessOnPort(port), server.pid);
    assert.equal(await PIDManager.killStaleProcess(server.pid, 5), true);
    assert.equal(await listening(port), false, 'killed with the port still held');
    assert.equal(await exited, 'SIGTERM');
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
});
