// The Linux backend on the rows of the guarantee table where it must
// answer as the Rust host does (host/src/capabilities/process_table/
// linux.rs): empty arguments are arguments, a thread id is not a process
// and is never signalled, a process /proc hides is alive (not gone), a
// process that exits while it is read is `not-found` (never a trap), and
// the uid is the real one. Real processes, started and reaped here; where
// the kernel cannot be made to show a row (hidepid, a read cut by an exit),
// a made-up /proc does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { load } from './package.js';

const { GuestError, PIDManager, Plugin } = await load('index.js');
const { LinuxBackend } = await load('linux.js');

/** Start `python3 -c code args...`; resolves once it printed a line. */
async function python(code, args = []) {
  const child = spawn('python3', ['-c', code, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((ok, fail) => {
    child.stdout.once('data', ok);
    child.once('exit', () => fail(new Error('python3 exited before it was ready')));
  });
  return child;
}

/** Stop and reap a child this test started. */
async function reap(child) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGKILL');
    await exited;
  }
}

const SLEEPS = 'import sys, time; print("ready", flush=True); time.sleep(60)';

/** What `fn` throws, as [kind, message] (or 'returned' and the value). */
function outcome(fn) {
  try {
    return ['returned', fn()];
  } catch (e) {
    assert.ok(e instanceof GuestError, `a GuestError, not ${e}`);
    return [e.kind, e.message];
  }
}

test('an empty argument is an argument: `bengal "" serve` is not `bengal serve`', async () => {
  const empty = await python(SLEEPS, ['bengal', '', 'serve']);
  const plain = await python(SLEEPS, ['bengal', 'serve']);
  try {
    assert.equal(await PIDManager.isBengalProcess(plain.pid), true, 'the control is Bengal');
    assert.equal(await PIDManager.isBengalProcess(empty.pid), false);
    assert.deepEqual(new LinuxBackend().inspect(empty.pid).argv.slice(-3), ['bengal', '', 'serve']);
  } finally {
    await reap(empty);
    await reap(plain);
  }
});

test('a thread id is not a process, and is never signalled', async () => {
  const server = await python(
    'import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); '
    + 'print("ready", flush=True); time.sleep(60)',
    ['bengal', 'serve'],
  );
  try {
    const tid = Number(readdirSync(`/proc/${server.pid}/task`).find((t) => Number(t) !== server.pid));
    assert.ok(tid, 'the server has a second thread');
    assert.equal(await PIDManager.isBengalProcess(server.pid), true, 'the process is Bengal');
    assert.equal(await PIDManager.isBengalProcess(tid), false, 'its thread is not');
    assert.equal(await PIDManager.killStaleProcess(tid, 1), false);
    await new Promise((ok) => setTimeout(ok, 100));
    assert.equal(server.exitCode ?? server.signalCode, null, 'the process was not signalled');
    const backend = new LinuxBackend();
    assert.equal(backend.state(server.pid), 'running');
    assert.equal(outcome(() => backend.state(tid))[0], 'invalid');
    assert.equal(outcome(() => backend.inspect(tid))[0], 'invalid');
    const token = backend.inspect(server.pid).startToken;
    assert.equal(outcome(() => backend.send(tid, token, 'term'))[0], 'invalid');
  } finally {
    await reap(server);
  }
});

test('the uid is the real one, not the owner of /proc/<pid>', { skip: process.geteuid() !== 0 && 'needs root (setresuid)' }, async () => {
  // Real uid 4242, effective root: /proc/<pid> belongs to root.
  const child = await python(`import os, time; os.setresuid(4242, 0, 0); ${SLEEPS.split('; ').slice(1).join('; ')}`);
  try {
    assert.equal(new LinuxBackend().inspect(child.pid).uid, 4242);
  } finally {
    await reap(child);
  }
});

/** A made-up /proc with `files` under `<pid>/`. */
function fakeProc(pid, files) {
  const proc = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-proc-')));
  mkdirSync(join(proc, String(pid)));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(proc, String(pid), name), text);
  return proc;
}

const STATUS = (pid, uid) => `Name:\tpython3\nState:\tS (sleeping)\nTgid:\t${pid}\nPid:\t${pid}\n`
  + `Uid:\t${uid}\t0\t0\t0\nThreads:\t1\n`;
const STAT = (pid) => `${pid} (python3) S 1 ${pid} ${pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4242 0 0\n`;

test('a process that /proc hides (hidepid) is alive and unreadable, not gone', async () => {
  const hidden = await python(SLEEPS, ['bengal', 'serve']);
  const dead = spawnSync('true').pid;
  try {
    // hidepid=2 hides another user's /proc/<pid> entirely: as this empty /proc.
    const backend = new LinuxBackend({ proc: realpathSync(mkdtempSync(join(tmpdir(), 'pidman-proc-'))) });
    assert.equal(backend.state(hidden.pid), 'running');
    assert.equal(outcome(() => backend.inspect(hidden.pid))[0], 'permission-denied');
    assert.equal(backend.state(dead), 'gone');
    assert.equal(outcome(() => backend.inspect(dead))[0], 'not-found');
    // The plugin never reports it stopped while it runs.
    const plugin = await Plugin.load();
    const root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-hidden-')));
    await assert.rejects(plugin.call(backend, root, 'killStaleProcess', hidden.pid, 200n), GuestError);
    assert.equal(hidden.exitCode ?? hidden.signalCode, null);
  } finally {
    await reap(hidden);
  }
});

test('a process that exits while it is read is not-found, never a trap', () => {
  const dead = spawnSync('true').pid;
  // Its stat was read, then it was gone: status, then cmdline, missing.
  for (const files of [{ stat: STAT(dead) }, { stat: STAT(dead), status: STATUS(dead, 1000) }]) {
    const backend = new LinuxBackend({ proc: fakeProc(dead, files) });
    assert.deepEqual(outcome(() => backend.inspect(dead)).slice(0, 1), ['not-found'], Object.keys(files).join());
  }
  // A stat line cut short by the exit.
  const cut = new LinuxBackend({ proc: fakeProc(dead, { stat: `${dead} (pyth`, status: STATUS(dead, 1000), cmdline: '' }) });
  assert.equal(outcome(() => cut.inspect(dead))[0], 'not-found');
});

test('the uid is the first of /proc/<pid>/status `Uid:`; every read goes where `proc` says', () => {
  const pid = process.pid;
  const backend = new LinuxBackend({
    proc: fakeProc(pid, { stat: STAT(pid), status: STATUS(pid, 4321), cmdline: 'bengal\0\0serve\0' }),
  });
  const info = backend.inspect(pid);
  assert.equal(info.uid, 4321);
  assert.deepEqual(info.argv, ['bengal', '', 'serve']);
  assert.equal(info.startToken, 4242n);
});
