// The real-backend conformance scenarios (tests/conformance/real.json)
// through the Node host: real processes, files, locks and loopback sockets,
// the plugin's exports called directly (PIDManager.call, at the level of
// the WIT, not the convenience API), each decided as the Rust host decides
// it. Everything a scenario starts is stopped and reaped at its end; only
// PIDs the test started are signalled.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  accessSync, chmodSync, chownSync, constants, lstatSync, mkdtempSync, readFileSync, realpathSync,
  rmSync, statSync, symlinkSync, utimesSync, writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { load, packageDir } from './package.js';

const { GuestError, PIDManager } = await load('index.js');

// The repository this test file lives in (not the installed package's).
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const scenarios = JSON.parse(readFileSync(join(repo, 'tests', 'conformance', 'real.json'), 'utf8'));
const fixture = join(repo, 'tests', 'fixtures', 'bengal');
const NOBODY = 65534;
const isRoot = process.geteuid() === 0;
const linux = process.platform === 'linux';

/** Whether a user other than the owner may run `path` (every directory on
 *  the way searchable, the file executable, by others). */
function usableByOthers(path) {
  let real;
  try { real = realpathSync(path); } catch { return false; }
  for (let p = real; ; p = dirname(p)) {
    if (!(statSync(p).mode & 0o001)) return false;
    if (p === dirname(p)) return true;
  }
}

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try { accessSync(join(dir, name), constants.X_OK); return join(dir, name); } catch { /* next */ }
  }
  return null;
}

/** A Python interpreter: python3 on the PATH, or (for uid 65534) one that
 *  user may run. */
function python(forNobody = false) {
  const candidates = [which('python3'), '/usr/bin/python3'].filter(Boolean);
  const found = forNobody ? candidates.find(usableByOthers) : candidates[0];
  if (!found) throw new Error(`no python3${forNobody ? ' that uid 65534 may run' : ''}`);
  return found;
}

async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/** The state letter of /proc/<pid>/stat (null when gone). */
function stateOf(pid) {
  let line;
  try { line = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return null; }
  return line[line.lastIndexOf(')') + 2];
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function waitFor(predicate, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const lexists = (path) => { try { lstatSync(path); return true; } catch { return false; } };

const THREAD_SERVER = [
  'import os, threading, time',
  'def sleeper(): time.sleep(120)',
  't = threading.Thread(target=sleeper, daemon=True)',
  't.start()',
  'while t.native_id is None: time.sleep(0.001)',
  "print('ready', os.getpid(), t.native_id, flush=True)",
  'time.sleep(120)',
].join('\n');

// Node reaps every child it starts, so the zombie is a grandchild: its
// parent leaves it unreaped until SIGTERM, then reaps it and exits.
const ZOMBIE_PARENT = [
  'import signal, subprocess, sys, time',
  "child = subprocess.Popen([sys.executable, sys.argv[1], 'serve', '--exit'])",
  'def stop(*_):',
  '    child.wait()',
  '    sys.exit(0)',
  'signal.signal(signal.SIGTERM, stop)',
  "print('ready', child.pid, flush=True)",
  'time.sleep(120)',
].join('\n');

const LOCK_HOLDER = [
  'import fcntl, sys, time',
  "f = open(sys.argv[1], 'a')",
  'fcntl.flock(f, fcntl.LOCK_EX)',
  "print('ready', flush=True)",
  'time.sleep(120)',
].join('\n');

// The call as uid 65534: a child Node that loads the package (and the
// plugin, with a first call) as root, then drops to that user for the call.
const AS_NOBODY = `
const [indexUrl, grant, op, pidFile, pid, port] = JSON.parse(process.argv[1]);
const { GuestError, PIDManager } = await import(indexUrl);
await PIDManager.call(grant, 'getPidFile', grant);
process.setgroups([]);
process.setgid(${NOBODY});
process.setuid(${NOBODY});
const { perform } = await import('data:text/javascript,' + encodeURIComponent(process.argv[2]));
process.stdout.write(JSON.stringify(await perform(PIDManager, GuestError, grant, op, pidFile, pid, port, process.pid)));
process.exit(0);
`;

/** The scenario's call, as `callerPid`: { ok: value } or { error: kind }.
 *  (Its source also runs in the uid-65534 child: self-contained.) */
async function perform(PIDManager, GuestError, grant, op, pidFile, pid, port, callerPid) {
  try {
    let value;
    if (op === 'check') {
      value = (await PIDManager.call(grant, 'checkStalePid', pidFile)) ?? null;
    } else if (op === 'is-bengal') {
      value = await PIDManager.call(grant, 'isBengalProcess', pid);
    } else if (op === 'kill') {
      await PIDManager.call(grant, 'killStaleProcess', pid, 2000n);
      value = true;
    } else if (op === 'port') {
      const owner = await PIDManager.call(grant, 'getProcessOnPort', port);
      if (owner.tag === 'listener' || owner.tag === 'holder') value = owner.val;
      else if (owner.tag === 'free') value = null;
      else value = { [owner.tag]: owner.val };
    } else if (op === 'acquire-release') {
      const claim = await PIDManager.call(grant, 'acquire', pidFile, callerPid);
      if (claim.tag === 'held') {
        value = 'held';
      } else {
        await PIDManager.call(grant, 'release', claim.val, pidFile, callerPid);
        value = 'claimed';
      }
    } else if (op === 'remove') {
      value = await PIDManager.call(grant, 'removePidFile', pidFile, undefined);
    } else {
      throw new Error(`unknown call ${op}`);
    }
    return { ok: value };
  } catch (e) {
    if (e instanceof GuestError) return { error: e.kind };
    throw e;
  }
}

/** What a scenario set up, and everything to stop afterwards. */
class World {
  constructor() {
    this.dir = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-real-')));
    chmodSync(this.dir, 0o755); // searchable by uid 65534, for root_only rows
    this.pidFile = join(this.dir, '.bengal.pid');
    this.pid = null;
    this.port = null;
    this.proc = null;
    this.children = [];
  }

  /** Start `argv` and wait for its first line ("ready ..."), split. */
  async start(argv, options = {}) {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], cwd: '/', ...options });
    const exited = new Promise((ok) => child.once('exit', ok));
    this.children.push({ child, exited, zombieParent: argv.includes(ZOMBIE_PARENT) });
    const line = await new Promise((ok, fail) => {
      let text = '';
      const timer = setTimeout(() => fail(new Error(`${argv.join(' ')} printed nothing in 15 s`)), 15000);
      child.stdout.on('data', (chunk) => {
        text += chunk;
        if (text.includes('\n')) { clearTimeout(timer); ok(text.split('\n')[0]); }
      });
      child.once('exit', () => { clearTimeout(timer); fail(new Error(`${argv.join(' ')} exited before it was ready`)); });
    });
    return [child, line.trim().split(/\s+/)];
  }

  running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async close() {
    for (const { child, exited, zombieParent } of this.children.reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(zombieParent ? 'SIGTERM' : 'SIGKILL');
      }
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const asNobody = (s) => s.lock === 'root-leftover' || s.process === 'hidepid';

async function arrange(world, s) {
  const py = python();
  const portArgs = [];
  if (s.listen) {
    world.port = await freePort();
    portArgs.push('--port', String(world.port));
  } else if (s.call === 'port') {
    world.port = await freePort();
  }
  const startedAt = Date.now() / 1000;
  let line;
  switch (s.process) {
    case null:
      break;
    case 'bengal':
      [world.proc, line] = await world.start([py, fixture, 'serve', ...portArgs]);
      world.pid = Number(line[1]);
      break;
    case 'other':
      [world.proc, line] = await world.start([py, fixture, 'build']);
      world.pid = Number(line[1]);
      break;
    case 'dead': // ran and reaped: no process has its PID now
      world.pid = spawnSync('true').pid;
      break;
    case 'zombie':
      [, line] = await world.start([py, '-c', ZOMBIE_PARENT, fixture]);
      world.pid = Number(line[1]);
      await waitFor(() => stateOf(world.pid) === 'Z', 'the zombie');
      break;
    case 'thread':
      [world.proc, line] = await world.start([py, '-c', THREAD_SERVER, 'bengal', 'serve']);
      world.pid = Number(line[2]);
      break;
    case 'empty-argument':
      [world.proc, line] = await world.start([py, fixture, '', 'serve']);
      world.pid = Number(line[1]);
      break;
    case 'main-exited':
      [world.proc, line] = await world.start([py, fixture, 'serve', '--main-exits', ...portArgs]);
      world.pid = Number(line[1]);
      await waitFor(() => stateOf(world.pid) === 'Z', "the main thread's exit");
      break;
    case 'hidepid': // root's server, which the caller (65534) will not see
      chownSync(world.dir, NOBODY, NOBODY);
      [world.proc, line] = await world.start([py, fixture, 'serve', ...portArgs]);
      world.pid = Number(line[1]);
      break;
    case 'other-user':
      [world.proc, line] = await world.start([python(true), fixture, 'serve', ...portArgs], { uid: NOBODY, gid: NOBODY });
      world.pid = Number(line[1]);
      break;
    default:
      throw new Error(`unknown process ${s.process}`);
  }

  if (s.lock === 'root-leftover') {
    chownSync(world.dir, NOBODY, NOBODY);
    writeFileSync(`${world.pidFile}.lock`, '');
    chmodSync(`${world.pidFile}.lock`, 0o644); // root's, read-only to the user
  }

  const f = s.pid_file;
  if (f !== null) {
    let contents = `${world.pid}\n`;
    let target = world.pidFile;
    if (f === 'garbage') contents = 'not a pid\n';
    else if (f === 'oversize') contents = String(world.pid).padEnd(100);
    else if (f === 'symlink') {
      target = join(world.dir, 'elsewhere.pid');
      symlinkSync(target, world.pidFile);
    }
    if (f === 'fifo') {
      const made = spawnSync('mkfifo', [world.pidFile]);
      assert.equal(made.status, 0, 'mkfifo');
    } else {
      writeFileSync(target, contents);
      if (f === 'world-writable') chmodSync(target, 0o666);
      if (s.written === 'before-start') utimesSync(target, startedAt - 60, startedAt - 60);
    }
    if (asNobody(s) && f !== 'symlink') chownSync(world.pidFile, NOBODY, NOBODY);
  }

  if (s.lock === 'held') await world.start([py, '-c', LOCK_HOLDER, `${world.pidFile}.lock`]);
}

/** The call made by a child Node running as uid 65534; for a `hidepid`
 *  process, in its own mount namespace whose /proc hides other users'
 *  processes (util-linux's unshare, as root). */
async function callAsNobody(world, s) {
  const indexUrl = pathToFileURL(join(packageDir, 'index.js')).href;
  const args = [
    '--input-type=module', '-e', AS_NOBODY,
    JSON.stringify([indexUrl, world.dir, s.call, world.pidFile, world.pid, world.port]),
    `export ${perform.toString()}`,
  ];
  const argv = s.process === 'hidepid'
    ? ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
      'mount -t proc -o hidepid=2 proc /proc && exec "$@"', 'sh', process.execPath, ...args]
    : [process.execPath, ...args];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { err += c; });
  const code = await new Promise((ok) => child.once('exit', ok));
  assert.equal(code, 0, `the uid-${NOBODY} call failed: ${err}`);
  return JSON.parse(out);
}

for (const s of scenarios) {
  const skip = !linux ? 'the real-backend scenarios are Linux\'s' : (s.root_only && !isRoot ? 'root only' : false);
  test(s.name, { skip }, async () => {
    const world = new World();
    try {
      await arrange(world, s);
      const result = asNobody(s)
        ? await callAsNobody(world, s)
        : await perform(PIDManager, GuestError, world.dir, s.call, world.pidFile, world.pid, world.port, process.pid);
      const wanted = 'ok' in s.expect.result
        ? { ok: s.expect.result.ok === 'pid' ? world.pid : s.expect.result.ok }
        : s.expect.result;
      assert.deepEqual(result, wanted);
      if (s.expect.pid_file === 'kept') assert.ok(lexists(world.pidFile), 'the PID file was removed');
      if (s.expect.pid_file === 'removed') assert.ok(!lexists(world.pidFile), 'the PID file was kept');
      if (s.expect.process === 'running') {
        await sleep(50);
        assert.ok(world.running(), 'the process was stopped');
      } else if (s.expect.process === 'gone') {
        await waitFor(() => !world.running(), 'the process to be gone', 2000);
      }
    } finally {
      await world.close();
    }
  });
}

test('the real scenarios are well formed', () => {
  const keys = ['call', 'expect', 'listen', 'lock', 'name', 'pid_file', 'process', 'root_only', 'written'];
  assert.equal(new Set(scenarios.map((s) => s.name)).size, scenarios.length);
  for (const s of scenarios) {
    assert.deepEqual(Object.keys(s).sort(), keys, s.name);
    assert.deepEqual(Object.keys(s.expect).sort(), ['pid_file', 'process', 'result'], s.name);
  }
});
