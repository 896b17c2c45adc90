// pidman for Node: Bengal's PID-manager operations in camelCase, and the
// claim a dev server holds for its life, decided by the pidman plugin
// component on the real OS (see linux.js for what Node does there).

import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { GuestError, Plugin, PluginTrap } from './pidman.js';
import { LinuxBackend } from './linux.js';

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

/** A claimed PID file: the lock is held (naming the PID) until `release()`,
 *  which removes the file if it still names the PID. */
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
}

export class PIDManager {
  static #plugin;

  /** The shared plugin (loaded on first use). */
  static async plugin() {
    PIDManager.#plugin ??= await Plugin.load();
    return PIDManager.#plugin;
  }

  /** Call an export in the instance for `grant`. */
  static async call(grant, exportName, ...args) {
    return (await PIDManager.plugin()).call(new LinuxBackend(), grant, exportName, ...args);
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
