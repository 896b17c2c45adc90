// A simulated world for the conformance scenarios: in-memory processes and
// sockets, a virtual clock that wait-exit advances, simulated locks. Files
// stay real; only their owner is simulated. A process has a parent and a
// group; when it exits its children are reparented to init and its
// sockets close, unless it is a reloader's `respawn` child, which its
// parent replaces (tests/conformance/README.md). Mirrors the Rust host's
// `pidman::simulated` and the Python host's `SimBackend`.

import { lstatSync } from 'node:fs';
import { basename } from 'node:path';

import { GuestError } from './pidman.js';

export const OWN_PID = 4000;
export const PARENT_PID = 3999;
export const UID = 1000;

export class SimBackend {
  constructor() {
    this.nowMs = Date.now();
    this.processes = new Map();
    this.add(1, SimBackend.process(['/sbin/init'], this.nowMs - 86_400_000, 0, { parent: 0 }));
    this.add(PARENT_PID, SimBackend.process(['bash'], this.nowMs - 600_000, UID));
    this.add(OWN_PID, SimBackend.process(['pidman'], this.nowMs - 5, UID, { parent: PARENT_PID, group: PARENT_PID }));
    this.socketList = [];
    this.signals = [];
    this.locksHeldElsewhere = new Set();
    this.locks = new Set();
    this.fileOwners = new Map();
  }

  /** `onTerm`: ms until exit after SIGTERM, or null to ignore it. `group`
   *  0: the process's own PID (set when it is added). `session`: its session
   *  (0: unknown; a session leader's is its own PID). `respawn`: a
   *  reloader's child, which its parent replaces when it exits. */
  static process(argv, start, uid, {
    zombie = false, onTerm = 50, unkillable = false, parent = 1, group = 0, session = 0, respawn = false,
  } = {}) {
    return {
      argv, start, uid, zombie, onTerm, unkillable, exitsAt: null, parent, group, session, respawn, termed: false,
    };
  }

  /** Add process `pid` (leading its own group unless it has one). */
  add(pid, p) {
    p.group ||= pid;
    this.processes.set(pid, p);
  }

  advance(to) {
    this.nowMs = Math.max(this.nowMs, to);
    const due = [...this.processes]
      .filter(([, p]) => !p.zombie && p.exitsAt !== null && p.exitsAt <= this.nowMs)
      .sort(([a, p], [b, q]) => p.exitsAt - q.exitsAt || a - b);
    for (const [pid] of due) this.exit(pid);
  }

  /** Process `pid` exits: a zombie now; its children go to init; its
   *  sockets close (their slot stays, on port 0: handles are indices), or
   *  pass to the replacement its parent starts. */
  exit(pid) {
    const p = this.processes.get(pid);
    p.zombie = true;
    for (const child of this.processes.values()) if (child.parent === pid) child.parent = 1;
    const heir = this.respawn(p);
    for (const s of this.socketList) {
      if (s.pid !== pid) continue;
      if (heir === null) s.port = 0;
      else s.pid = heir;
    }
  }

  /** The replacement a reloader starts for its exited child `p` (the next
   *  free PID, same argv, parent, group and session, started now), when its
   *  parent still runs and was not sent SIGTERM; else null. */
  respawn(p) {
    const parent = this.processes.get(p.parent);
    if (!p.respawn || p.parent === 1 || !parent || parent.zombie || parent.termed) return null;
    const heir = Math.max(...this.processes.keys()) + 1;
    this.add(heir, SimBackend.process([...p.argv], this.nowMs, p.uid, {
      onTerm: p.onTerm, parent: p.parent, group: p.group, session: p.session, respawn: true,
    }));
    return heir;
  }

  identified(pid, token) {
    const p = this.processes.get(pid);
    if (!p) throw new GuestError('not-found');
    if (BigInt(p.start) !== BigInt(token)) throw new GuestError('changed');
    return p;
  }

  ownPid() { return OWN_PID; }
  parentPid() { return PARENT_PID; }
  ownUid() { return UID; }

  state(pid) {
    const p = this.processes.get(pid);
    return !p ? 'gone' : p.zombie ? 'zombie' : 'running';
  }

  inspect(pid) {
    const p = this.processes.get(pid);
    if (!p) throw new GuestError('not-found');
    return {
      pid, name: p.argv.length ? basename(p.argv[0]) : '', argv: p.zombie ? [] : [...p.argv],
      startTimeMs: BigInt(p.start), startToken: BigInt(p.start), uid: p.uid,
      state: p.zombie ? 'zombie' : 'running', parent: p.parent, group: p.group, session: p.session,
    };
  }

  snapshot() {
    return [...this.processes].map(([pid, p]) => ({
      pid, parent: p.parent, group: p.group, startToken: BigInt(p.start), state: p.zombie ? 'zombie' : 'running',
    }));
  }

  send(pid, token, sig) {
    if ([0, 1, OWN_PID, PARENT_PID].includes(pid)) throw new GuestError('denied', `the host refuses to signal PID ${pid}`);
    const p = this.identified(pid, token);
    if (p.zombie) throw new GuestError('not-found');
    if (p.uid !== UID) throw new GuestError('denied', `PID ${pid} belongs to uid ${p.uid}`);
    this.signals.push([pid, sig]);
    if (sig === 'term') {
      p.termed = true;
      if (p.onTerm !== null) p.exitsAt = this.nowMs + p.onTerm;
    } else if (sig === 'kill' && !p.unkillable) {
      this.exit(pid);
    }
    // 'cont': simulated processes are never stopped.
  }

  waitExit(pid, token, timeoutMs) {
    let p;
    try { p = this.identified(pid, token); } catch { return true; }
    if (p.zombie) return true;
    const deadline = this.nowMs + timeoutMs;
    if (p.exitsAt !== null && p.exitsAt <= deadline) {
      this.advance(p.exitsAt);
      return true;
    }
    this.advance(deadline);
    return false;
  }

  /** The virtual clock, the one waitExit advances. */
  clockMs() { return BigInt(this.nowMs); }

  sockets(port, listening) {
    return this.socketList
      .map((s, i) => ({ s, handle: BigInt(i + 1) }))
      .filter(({ s }) => s.port === port && s.listening === listening)
      .map(({ s, handle }) => ({
        ipv6: s.ipv6, localAddress: s.ipv6 ? '::' : '127.0.0.1',
        state: s.listening ? 'listen' : 'established', uid: s.uid, handle,
      }));
  }

  socketOwner(handle) {
    const s = this.socketList[Number(handle) - 1];
    return s && s.pid !== null ? s.pid : undefined;
  }

  fileOwner(path) {
    let st;
    try { st = lstatSync(path); } catch { throw new GuestError('not-found'); }
    return { uid: this.fileOwners.get(path) ?? UID, mode: st.mode & 0o7777, symlink: st.isSymbolicLink() };
  }

  tryLock(path) {
    if (this.lockError) throw new GuestError(this.lockError, 'simulated');
    if (this.locksHeldElsewhere.has(path) || this.locks.has(path)) return undefined;
    this.locks.add(path);
    return path;
  }

  release(held) { this.locks.delete(held); }
}
