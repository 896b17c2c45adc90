// pidman for Node: Bengal's PID-manager operations in camelCase, and the
// claim a dev server holds for its life, decided by the pidman plugin
// component on the real OS (see linux.js for what Node does there).
//
// The plugin runs in a worker thread (worker.js): its imports wait
// synchronously (for a process to exit, for a lock), and there they block
// the worker, never this thread's event loop. Each call is a message; the
// worker is unref'd while no call is under way, so it never keeps the
// process alive (a held claim does not either: its lock ends with the
// process).

import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';

import { GuestError, Plugin, PluginTrap } from './pidman.js';

export { GuestError, Plugin, PluginTrap };

/** [directory to preopen, the PID file's path as the plugin sees it]: the
 *  file's directory, or while it is missing its nearest existing ancestor. */
export function grantFor(pidFile) {
  const missing = [basename(resolve(pidFile))];
  let dir = dirname(resolve(pidFile));
  while (!existsSync(dir) || !statSync(dir).isDirectory()) {
    missing.unshift(basename(dir));
    dir = dirname(dir);
  }
  const grant = realpathSync(dir);
  return [grant, join(grant, ...missing)];
}

const seconds = (s) => BigInt(Math.round(s * 1000));

// The worker, started on the first call (and again after it died), and
// the calls it has not answered yet.
let worker = null;
const pending = new Map();
let lastCall = 0;

/** The error the worker described, as the class the caller catches. */
function revived(error) {
  if (error.type === 'guest') return new GuestError(error.kind, error.detail);
  if (error.type === 'trap') {
    const cause = error.cause && Object.assign(new Error(error.cause.message), { name: error.cause.name });
    return new PluginTrap(error.message, cause ? { cause } : undefined);
  }
  return Object.assign(new Error(error.message), { name: error.name, stack: error.stack });
}

/** The worker is gone (it failed, or exited): every unanswered call fails,
 *  and the next call starts a new one. Claims it held have lost their lock
 *  objects (their descriptors, and so their locks, last until this process
 *  exits). */
function lost(why) {
  worker = null;
  for (const { reject } of pending.values()) reject(new PluginTrap(`the plugin's worker ended: ${why}`));
  pending.clear();
}

function started() {
  if (worker) return worker;
  // None of this process's Node flags: the worker runs pidman's own code
  // only, and some (`--input-type`, for `node -e`) would stop it.
  const w = new Worker(new URL('./worker.js', import.meta.url), { execArgv: [] });
  w.on('message', ({ id, value, error }) => {
    const call = pending.get(id);
    pending.delete(id);
    if (pending.size === 0) w.unref();
    if (error) call?.reject(revived(error));
    else call?.resolve(value);
  });
  w.on('error', (e) => { if (worker === w) lost(e.message); });
  w.on('exit', (code) => { if (worker === w) lost(`exit code ${code}`); });
  w.unref();
  worker = w;
  return w;
}

/** Call `exportName` in the worker's instance for `grant`. */
function call(grant, exportName, args) {
  const w = started();
  lastCall += 1;
  const id = lastCall;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ id, grant, exportName, args });
  });
}

/** A claimed PID file: the lock is held (naming the PID) until `release()`
 *  (or `await using`'s dispose), which removes the file if it still names
 *  the PID. The lock itself stays in the worker; the Claim holds its
 *  number. */
export class Claim {
  #grant;
  #lock;

  constructor(pidFile, grant, lock, pid) {
    this.claimed = true;
    this.pidFile = pidFile;
    this.pid = pid;
    this.#grant = grant;
    this.#lock = lock;
  }

  /** End the claim; whether the file was removed. */
  async release() {
    const lock = this.#lock;
    this.#lock = undefined;
    if (lock === undefined) return false;
    return PIDManager.call(this.#grant, 'release', lock, this.pidFile, this.pid);
  }

  /** `await using claim = ...`: released at the end of the block. */
  async [Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')]() {
    await this.release();
  }
}

export class PIDManager {
  /** Call an export in the worker's instance for `grant`, on the real OS. */
  static async call(grant, exportName, ...args) {
    return call(grant, exportName, args);
  }

  static async #call(pidFile, exportName, ...args) {
    if (pidFile === null) return PIDManager.call(realpathSync(process.cwd()), exportName, ...args);
    const [grant, path] = grantFor(pidFile);
    return PIDManager.call(grant, exportName, path, ...args);
  }

  static getPidFile(projectRoot) {
    return join(projectRoot, '.bengal.pid');
  }

  static async isBengalProcess(pid) {
    return PIDManager.#call(null, 'isBengalProcess', pid);
  }

  static async checkStalePid(pidFile) {
    return (await PIDManager.#call(pidFile, 'checkStalePid')) ?? null;
  }

  /** Stop `pid` and its whole tree (SIGTERM the root first, one timeout,
   *  SIGKILL the survivors): true once every member is gone. */
  static async killStaleProcess(pid, timeoutSeconds = 5) {
    try {
      await PIDManager.#call(null, 'killStaleProcess', pid, seconds(timeoutSeconds));
      return true;
    } catch (e) {
      if (e instanceof GuestError) return false;
      throw e;
    }
  }

  /** The tree `killStaleProcess(pid)` would stop now, the root first;
   *  nothing is signalled. Empty when `pid` does not run. */
  static async planStop(pid) {
    return PIDManager.#call(null, 'planStop', pid);
  }

  static async writePidFile(pidFile, pid = process.pid) {
    await PIDManager.#call(pidFile, 'writePidFile', pid);
  }

  static async getProcessOnPort(port) {
    const owner = await PIDManager.#call(null, 'getProcessOnPort', port);
    return owner.tag === 'listener' || owner.tag === 'holder' ? owner.val : null;
  }

  /** Who holds TCP `port`, with the holder's ancestry; with `pidFile`, the
   *  server its claim names is recognised too (role `claimed`). */
  static async describePort(port, { pidFile } = {}) {
    if (pidFile === undefined) return PIDManager.#call(null, 'describePort', port, undefined);
    const [grant, path] = grantFor(pidFile);
    return PIDManager.call(grant, 'describePort', port, path);
  }

  /** Claim `pidFile` for `pid` (default: this process) unless a live server
   *  holds it: a Claim, or `{ claimed: false, holder }`. */
  static async acquire(pidFile, { pid = process.pid } = {}) {
    const [grant, path] = grantFor(pidFile);
    const claim = await PIDManager.call(grant, 'acquire', path, pid);
    if (claim.tag === 'held') return { claimed: false, holder: claim.val.pid ?? null, pidFile: path };
    return new Claim(path, grant, claim.val, pid);
  }

  /** Clean shutdown: remove `pidFile` unless it names another live server
   *  (GuestError `denied`, and the file is kept). */
  static async remove(pidFile) {
    return PIDManager.#call(pidFile, 'removePidFile', undefined);
  }

  /** The dev-server start check: a stale server from `pidFile`, else the
   *  server above the process holding `port` (the topmost Bengal or claimed
   *  process of its ancestry), with its tree; and who holds `port`. */
  static async preflight(pidFile, { port } = {}) {
    return PIDManager.#call(pidFile, 'preflight', port);
  }

  /** Stop the server `preflight` found and its tree (the root only if it
   *  is still that process), remove its PID file, look at the port again.
   *  `outcome` is the root's, as before; `stopped` every member's. */
  static async clearStale(pidFile, server, { port, timeoutSeconds } = {}) {
    const ms = timeoutSeconds === undefined ? undefined : seconds(timeoutSeconds);
    const cleared = await PIDManager.#call(pidFile, 'clearStale', server, port, ms);
    return { outcome: cleared.stopped.outcome, ...cleared };
  }
}
