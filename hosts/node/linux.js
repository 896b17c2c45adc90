// The real capabilities on Linux, from Node: /proc, kill(2) and flock(2).
// Node has no pidfds: signals go through kill(2) right after the start-token
// check (the Rust host's fallback path), and waiting polls /proc. Locks are
// real flock(2) locks on `<pid-file>.lock`, through the fs-ext addon, so a
// Node claim and a Rust or Python one exclude each other.
//
// The rows of the guarantee table this backend keeps as the Rust host's
// (host/src/capabilities/process_table/linux.rs) does: a thread id is not a
// process (`Tgid` in /proc/<id>/status differs) and is never signalled; a
// process /proc hides (`hidepid`) is alive and unreadable, not gone; a
// process that exits while it is read is `not-found`; the uid is the real
// one (`Uid:`'s first field), not the owner of /proc/<pid>; empty arguments
// are arguments. The waits here (Atomics.wait) block their thread: PIDManager
// runs this backend in a worker (worker.js), never on the caller's.

import {
  closeSync, fstatSync, lstatSync, openSync, constants, readFileSync, readdirSync, readlinkSync, realpathSync,
} from 'node:fs';

import fsExt from 'fs-ext';

import { GuestError } from './pidman.js';

const HZ = 100;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => Atomics.wait(sleeper, 0, 0, ms);

/** The fields of /proc/<pid>/stat pidman reads: the name between the
 *  first `(` and the last `)` (decoded lossily: a name need not be UTF-8),
 *  then field 3 state, 4 ppid, 5 pgrp, 6 session, 20 threads, 22 start time
 *  in clock ticks. */
export function parseStat(text) {
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 1).trim().split(/\s+/);
  if (close < 0 || fields.length < 20) {
    // An empty or cut line: the process is being reaped.
    throw Object.assign(new Error('/proc/<pid>/stat: cut short'), { code: 'ENOENT' });
  }
  return {
    name: text.slice(text.indexOf('(') + 1, close), state: fields[0],
    parent: Number(fields[1]), group: Number(fields[2]), session: Number(fields[3]),
    ticks: BigInt(fields[19]), threads: Number(fields[17]),
  };
}

/** The fields of /proc/<pid>/status pidman reads: `Tgid` (the process the
 *  id belongs to: another for a thread that does not lead its process),
 *  the real uid (`Uid:`, the first of four) and whether it has exited
 *  (`State` and `Threads`, as `stateOf`). Null when one is missing. */
export function parseStatus(text) {
  const field = (name) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}:`));
    return line === undefined ? undefined : line.slice(name.length + 1).trim();
  };
  const [tgid, uid, threads, state] = [field('Tgid'), field('Uid')?.split(/\s+/)[0], field('Threads'), field('State')];
  if (![tgid, uid, threads].every((v) => v !== undefined && /^\d+$/.test(v)) || !state) return null;
  return { tgid: Number(tgid), uid: Number(uid), zombie: stateOf({ state: state[0], threads: Number(threads) }) === 'zombie' };
}

/** A command line as the kernel keeps it: each argument ended by a NUL (a
 *  rewritten one may lack the last). Empty arguments are arguments:
 *  `bengal "" serve` is not `bengal serve`. */
export function parseCmdline(text) {
  if (text === '') return [];
  return (text.endsWith('\0') ? text.slice(0, -1) : text).split('\0');
}

/** Whether `pid` runs, by kill(pid, 0) alone: EPERM is another user's live
 *  process. For when /proc cannot tell (hidden, or gone). */
function probe(pid) {
  try {
    process.kill(pid, 0);
    return 'running';
  } catch (e) {
    if (e.code === 'EPERM') return 'running';
    if (e.code === 'ESRCH') return 'gone';
    throw osError(`PID ${pid}`, e);
  }
}

const threadOf = (tid, tgid) => new GuestError('invalid', `${tid} is a thread of process ${tgid}, not a process`);

/** Exited: `Z` or `X`, the main thread's state, and no thread left. A
 *  process whose main thread has ended while others run (every threaded
 *  server for a moment while it exits) still runs and holds its port. */
const stateOf = (s) => (['Z', 'X'].includes(s.state) && s.threads <= 1 ? 'zombie' : 'running');

function bootMs() {
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return BigInt(Math.round(Date.now() - uptime * 1000));
}

function osError(what, e) {
  if (e instanceof GuestError) return e;
  // A process that exits while its /proc files are read answers ESRCH.
  if (e.code === 'ENOENT' || e.code === 'ESRCH') return new GuestError('not-found');
  if (e.code === 'EACCES' || e.code === 'EPERM') return new GuestError('permission-denied', `${what}: ${e.code}`);
  return new GuestError('io', `${what}: ${e.message}`);
}

/** `path` (absolute, already checked against the grant by pidman.js),
 *  once every directory on the way to it has been found to be a directory
 *  and not a symlink (lstat, one step at a time from `/`), and the
 *  realpath of its parent equals that parent: a symlink planted inside the
 *  grant (`<grant>/link/x`, `link` -> anywhere) is `untrusted`, never
 *  followed. The last step is the caller's: `fileOwner` lstats it, and
 *  `tryLock` opens it with O_NOFOLLOW.
 *
 *  What remains (unlike the Rust and Python hosts, which open each
 *  directory from the one before, openat(2) with O_NOFOLLOW, and so follow
 *  nothing, ever): a time-of-check-to-time-of-use window. A process that
 *  can write inside the grant may swap a checked directory for a symlink
 *  between this check and the open or lstat that follows it, and the OS
 *  call then follows it. Node cannot close that window: `fs` has no
 *  openat, fstatat or any call relative to a directory descriptor, and no
 *  O_PATH / O_RESOLVE_BENEATH (openat2) either. (Linux's
 *  /proc/self/fd/<dir>/<name> would stand in for openat, but needs each
 *  directory opened readable (no O_PATH in fs.constants) and a mounted
 *  /proc; it is not used.) The window needs another writer inside the
 *  grant racing the call (the plugin cannot race its own `files` call,
 *  which is synchronous): another process of a user who may write there. */
function beneath(path) {
  const steps = path.split('/');
  const name = steps.pop();
  if (!path.startsWith('/') || !name) throw new GuestError('invalid', `${path} names no file below /`);
  let parent = '';
  for (const step of steps) {
    if (step === '') continue; // the root (the grant allows no empty step)
    parent += `/${step}`;
    let st;
    try { st = lstatSync(parent); } catch (e) { throw osError(path, e); }
    if (st.isSymbolicLink() || !st.isDirectory()) {
      throw new GuestError('untrusted', `${step} on the way to ${path} is a symlink or not a directory; pidman never follows one`);
    }
  }
  parent ||= '/';
  let real;
  try { real = realpathSync(parent); } catch (e) { throw osError(path, e); }
  if (real !== parent) {
    throw new GuestError('untrusted', `${parent} on the way to ${path} resolves to ${real} (a symlink swapped in); pidman never follows one`);
  }
  return path;
}

// The WIT `signal` enum, case by case: an unknown case throws (a trap),
// never becomes some other signal.
const SIGNALS = { term: 'SIGTERM', kill: 'SIGKILL', cont: 'SIGCONT' };

export class LinuxBackend {
  /** `proc`: where /proc is (a test gives a made-up one: a process it
   *  lacks is hidden, or has just exited). */
  constructor({ proc = '/proc' } = {}) {
    this.proc = proc;
    this.boot = bootMs();
  }

  #read(pid, file) { return readFileSync(`${this.proc}/${pid}/${file}`, 'utf8'); }

  #stat(pid) { return parseStat(this.#read(pid, 'stat')); }

  #status(pid) {
    const parsed = parseStatus(this.#read(pid, 'status'));
    if (!parsed) throw Object.assign(new Error(`/proc/${pid}/status: unparsable`), { code: 'EINVAL' });
    return parsed;
  }

  /** The command line in `dir`: `ENOENT`/`ESRCH` (gone) are thrown,
   *  anything else (unreadable) is an empty one. */
  #cmdline(dir) {
    try {
      return parseCmdline(readFileSync(`${dir}/cmdline`, 'utf8'));
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ESRCH') throw e;
      return [];
    }
  }

  /** The error for `pid` /proc could not read: a missing entry may be a
   *  live process that /proc hides from this user (`hidepid`), so
   *  kill(pid, 0) decides between gone and hidden. */
  #unreadable(pid, e) {
    const error = osError(`PID ${pid}`, e);
    if (error.kind !== 'not-found') return error;
    return probe(pid) === 'gone'
      ? error
      : new GuestError('permission-denied', `PID ${pid} runs, but /proc hides it from this user`);
  }

  ownPid() { return process.pid; }
  parentPid() { return process.ppid; }
  ownUid() { return process.geteuid(); }

  /** From /proc/<pid>/status, which also tells a thread id from a PID; a
   *  missing (or hidden) entry is decided by kill(pid, 0). */
  state(pid) {
    let s;
    try {
      s = this.#status(pid);
    } catch {
      return probe(pid);
    }
    if (s.tgid !== pid) throw threadOf(pid, s.tgid);
    return s.zombie ? 'zombie' : 'running';
  }

  inspect(pid) {
    let s, status, argv;
    try {
      s = this.#stat(pid);
      status = this.#status(pid);
      argv = this.#cmdline(`${this.proc}/${pid}`);
    } catch (e) {
      throw this.#unreadable(pid, e);
    }
    if (status.tgid !== pid) throw threadOf(pid, status.tgid);
    const zombie = stateOf(s) === 'zombie' || status.zombie;
    if (!argv.length && !zombie) {
      // A process whose main thread has ended shows an empty command line
      // there; its other threads share the same memory.
      let tids = [];
      try { tids = readdirSync(`${this.proc}/${pid}/task`).filter((t) => t !== String(pid)); } catch { /* gone */ }
      for (const tid of tids) {
        try { argv = this.#cmdline(`${this.proc}/${pid}/task/${tid}`); } catch { /* ended */ }
        if (argv.length) break;
      }
    }
    return {
      pid, name: s.name, argv, startTimeMs: this.boot + (s.ticks * 1000n) / BigInt(HZ),
      startToken: s.ticks, uid: status.uid, state: zombie ? 'zombie' : 'running', parent: s.parent,
      group: s.group, session: s.session,
    };
  }

  /** Every process in /proc (its numeric entries are thread-group leaders
   *  only), one stat read each; a process gone mid-read is left out. */
  snapshot() {
    let names;
    try { names = readdirSync(this.proc); } catch (e) { throw osError('/proc', e); }
    const entries = [];
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      let s;
      try { s = this.#stat(name); } catch { continue; }
      entries.push({ pid: Number(name), parent: s.parent, group: s.group, startToken: s.ticks, state: stateOf(s) });
    }
    return entries;
  }

  /** Whether `pid` still leads the process `token` pinned: not-found,
   *  changed, or invalid (a thread id) otherwise. */
  #identified(pid, token) {
    let s, status;
    try {
      status = this.#status(pid);
      s = this.#stat(pid);
    } catch { throw new GuestError('not-found'); }
    if (status.tgid !== pid) throw threadOf(pid, status.tgid);
    if (s.ticks !== BigInt(token)) throw new GuestError('changed');
    return s;
  }

  /** kill(2), once the start token still names the process. The host's
   *  floor (never PID 0 or 1, itself or its parent, a number beyond any PID,
   *  another user's process unless root) is pidman.js's, applied before
   *  any backend is asked. */
  send(pid, token, sig) {
    // kill(2) on a thread id signals its whole process: a thread id never
    // gets this far.
    this.#identified(pid, token);
    try {
      const name = SIGNALS[sig];
      if (!name) throw new Error(`unknown signal case ${sig}`);
      process.kill(pid, name);
    } catch (e) {
      throw osError(`signal PID ${pid}`, e);
    }
  }

  waitExit(pid, token, timeoutMs) {
    const deadline = performance.now() + timeoutMs;
    let pause = 1;
    for (;;) {
      let s;
      try {
        s = this.#identified(pid, token);
      } catch (e) {
        if (e.kind === 'invalid') throw e;
        return true;
      }
      if (stateOf(s) === 'zombie') return true;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, 20);
    }
  }

  /** The clock waitExit runs on: monotonic milliseconds, as a bigint. */
  clockMs() { return process.hrtime.bigint() / 1_000_000n; }

  sockets(port, listening) {
    const found = [];
    for (const [path, ipv6] of [[`${this.proc}/net/tcp`, false], [`${this.proc}/net/tcp6`, true]]) {
      let lines;
      try { lines = readFileSync(path, 'utf8').split('\n').slice(1); } catch { continue; }
      for (const line of lines) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10) continue;
        const [addr, hexPort] = f[1].split(':');
        if (parseInt(hexPort, 16) !== port || (f[3] === '0A') !== listening) continue;
        found.push({
          ipv6, localAddress: decode(addr, ipv6),
          state: f[3] === '0A' ? 'listen' : f[3] === '01' ? 'established' : 'other',
          uid: Number(f[7]), handle: BigInt(f[9]),
        });
      }
    }
    return found;
  }

  socketOwner(handle) {
    if (handle === 0n) return undefined;
    const wanted = `socket:[${handle}]`;
    // Whether the table holds it; null for a table with nothing.
    const holds = (fds) => {
      const names = readdirSync(fds);
      for (const fd of names) {
        try { if (readlinkSync(`${fds}/${fd}`) === wanted) return true; } catch { /* closed meanwhile */ }
      }
      return names.length ? false : null;
    };
    // Processes with no descriptors: kernel threads, and those whose main
    // thread has ended while other threads run on with the table.
    const empty = [];
    let entries;
    try { entries = readdirSync(this.proc); } catch (e) { throw osError('/proc', e); }
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const held = holds(`${this.proc}/${entry}/fd`);
        if (held) return Number(entry);
        if (held === null) empty.push(entry);
      } catch { /* not ours to read */ }
    }
    for (const entry of empty) {
      try {
        for (const tid of readdirSync(`${this.proc}/${entry}/task`)) {
          if (tid !== entry && holds(`${this.proc}/${entry}/task/${tid}/fd`)) return Number(entry);
        }
      } catch { /* gone */ }
    }
    return undefined;
  }

  /** lstat of `path`, no symlink followed on the way (`beneath`). */
  fileOwner(path) {
    let st;
    try { st = lstatSync(beneath(path)); } catch (e) { throw osError(path, e); }
    return { uid: st.uid, mode: st.mode & 0o7777, symlink: st.isSymbolicLink() };
  }

  /** flock(LOCK_EX) on `path` (created if missing, never through a
   *  symlink, never a FIFO or device), waiting at most `waitMs`; the open
   *  descriptor while held, undefined when another holder keeps it. No
   *  symlink is followed on the way either (`beneath`, and its window). */
  tryLock(path, waitMs) {
    beneath(path);
    let fd;
    const base = constants.O_NOFOLLOW | constants.O_NONBLOCK;
    try {
      fd = openSync(path, base | constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (e) {
      if (e.code === 'ELOOP') throw new GuestError('untrusted', `${path} is a symlink; pidman never follows one`);
      // A lock file this user may not write (root's leftover, mode 0644)
      // is locked read-only, as the Rust host does: flock needs no write
      // access, and the plugin then says what it cannot record there.
      let exists = false;
      try { lstatSync(path); exists = true; } catch { /* missing */ }
      if (!['EACCES', 'EPERM', 'EROFS'].includes(e.code) || !exists) throw osError(path, e);
      try {
        fd = openSync(path, base | constants.O_RDONLY);
      } catch (e2) {
        if (e2.code === 'ELOOP') throw new GuestError('untrusted', `${path} is a symlink; pidman never follows one`);
        throw osError(path, e2);
      }
    }
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new GuestError('invalid', `${path} is not a regular file, so not a lock file`);
    }
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        fsExt.flockSync(fd, 'exnb');
        return fd;
      } catch (e) {
        if (!['EAGAIN', 'EWOULDBLOCK', 'EINTR'].includes(e.code)) {
          closeSync(fd);
          throw osError(`lock ${path}`, e);
        }
      }
      if (Date.now() >= deadline) {
        closeSync(fd);
        return undefined;
      }
      sleep(1);
    }
  }

  /** Let a lock go: closing its descriptor releases the flock. */
  release(fd) {
    try { closeSync(fd); } catch { /* already closed */ }
  }
}

function decode(hex, ipv6) {
  const bytes = [];
  for (let i = 0; i < hex.length; i += 8) {
    const word = hex.slice(i, i + 8);
    for (let j = 6; j >= 0; j -= 2) bytes.push(parseInt(word.slice(j, j + 2), 16));
  }
  if (!ipv6) return bytes.join('.');
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}
