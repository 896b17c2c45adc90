// The real capabilities on Linux, from Node: /proc, kill(2) and flock(2).
// Node has no pidfds: signals go through kill(2) right after the start-token
// check (the Rust host's fallback path), and waiting polls /proc. Locks are
// real flock(2) locks on `<pid-file>.lock`, through the fs-ext addon, so a
// Node claim and a Rust or Python one exclude each other.

import { closeSync, fstatSync, lstatSync, openSync, constants, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';

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

function stat(pid) {
  return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** The command line in `procDir`; empty where it cannot be read. */
function cmdline(procDir) {
  try {
    return readFileSync(`${procDir}/cmdline`, 'utf8').split('\0').filter((a) => a.length);
  } catch { return []; /* hidden */ }
}

/** Exited: `Z` or `X`, the main thread's state, and no thread left. A
 *  process whose main thread has ended while others run (every threaded
 *  server for a moment while it exits) still runs and holds its port. */
const stateOf = (s) => (['Z', 'X'].includes(s.state) && s.threads <= 1 ? 'zombie' : 'running');

function bootMs() {
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return BigInt(Math.round(Date.now() - uptime * 1000));
}

function osError(what, e) {
  if (e.code === 'ENOENT' || e.code === 'ESRCH') return new GuestError('not-found');
  if (e.code === 'EACCES' || e.code === 'EPERM') return new GuestError('permission-denied', `${what}: ${e.code}`);
  return new GuestError('io', `${what}: ${e.message}`);
}

// The WIT `signal` enum, case by case: an unknown case throws (a trap),
// never becomes some other signal.
const SIGNALS = { term: 'SIGTERM', kill: 'SIGKILL', cont: 'SIGCONT' };

export class LinuxBackend {
  constructor() { this.boot = bootMs(); }

  ownPid() { return process.pid; }
  parentPid() { return process.ppid; }
  ownUid() { return process.geteuid(); }

  state(pid) {
    try {
      return stateOf(stat(pid));
    } catch (e) {
      if (e.code === 'ENOENT') return 'gone';
      throw osError(`PID ${pid}`, e);
    }
  }

  inspect(pid) {
    let s, uid;
    try {
      s = stat(pid);
      uid = statSync(`/proc/${pid}`).uid;
    } catch (e) {
      throw osError(`PID ${pid}`, e);
    }
    let argv = cmdline(`/proc/${pid}`);
    if (!argv.length && stateOf(s) === 'running') {
      // A process whose main thread has ended shows an empty command line
      // there; its other threads share the same memory.
      let tids = [];
      try { tids = readdirSync(`/proc/${pid}/task`).filter((t) => t !== String(pid)); } catch { /* gone */ }
      for (const tid of tids) {
        argv = cmdline(`/proc/${pid}/task/${tid}`);
        if (argv.length) break;
      }
    }
    return {
      pid, name: s.name, argv, startTimeMs: this.boot + (s.ticks * 1000n) / BigInt(HZ),
      startToken: s.ticks, uid, state: stateOf(s), parent: s.parent, group: s.group,
      session: s.session,
    };
  }

  /** Every process in /proc (its numeric entries are thread-group leaders
   *  only), one stat read each; a process gone mid-read is left out. */
  snapshot() {
    let names;
    try { names = readdirSync('/proc'); } catch (e) { throw osError('/proc', e); }
    const entries = [];
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      let s;
      try { s = stat(name); } catch { continue; }
      entries.push({ pid: Number(name), parent: s.parent, group: s.group, startToken: s.ticks, state: stateOf(s) });
    }
    return entries;
  }

  refusal(pid) {
    if (pid === 0 || pid === 1) return `PID ${pid} is never signalled`;
    if (pid === process.pid || pid === process.ppid) return `PID ${pid} is the host or its parent`;
    if (process.geteuid() !== 0) {
      try { if (statSync(`/proc/${pid}`).uid !== process.geteuid()) return `PID ${pid} belongs to another user`; } catch { /* gone */ }
    }
    return null;
  }

  send(pid, token, sig) {
    const why = this.refusal(pid);
    if (why) throw new GuestError('denied', why);
    let s;
    try { s = stat(pid); } catch { throw new GuestError('not-found'); }
    if (s.ticks !== BigInt(token)) throw new GuestError('changed');
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
      try { s = stat(pid); } catch { return true; }
      if (s.ticks !== BigInt(token) || stateOf(s) === 'zombie') return true;
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
    for (const [path, ipv6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]]) {
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
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const held = holds(`/proc/${entry}/fd`);
        if (held) return Number(entry);
        if (held === null) empty.push(entry);
      } catch { /* not ours to read */ }
    }
    for (const entry of empty) {
      try {
        for (const tid of readdirSync(`/proc/${entry}/task`)) {
          if (tid !== entry && holds(`/proc/${entry}/task/${tid}/fd`)) return Number(entry);
        }
      } catch { /* gone */ }
    }
    return undefined;
  }

  fileOwner(path) {
    let st;
    try { st = lstatSync(path); } catch (e) { throw osError(path, e); }
    return { uid: st.uid, mode: st.mode & 0o7777, symlink: st.isSymbolicLink() };
  }

  /** flock(LOCK_EX) on `path` (created if missing, never through a
   *  symlink, never a FIFO or device), waiting at most `waitMs`; the open
   *  descriptor while held, undefined when another holder keeps it. */
  tryLock(path, waitMs) {
    let fd;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
    } catch (e) {
      if (e.code === 'ELOOP') throw new GuestError('untrusted', `${path} is a symlink; pidman never follows one`);
      throw osError(path, e);
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
