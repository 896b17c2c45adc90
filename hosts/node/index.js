// pidman for Node: the seed's operations (camelCase), decided by the pidman
// plugin component on the real OS (see linux.js for what Node can and
// cannot do there).

import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { GuestError, Plugin } from './pidman.js';
import { LinuxBackend } from './linux.js';

export { GuestError, Plugin };

/** (directory to preopen, the PID file's path as the plugin sees it). */
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

export class PIDManager {
  static #plugin;

  static async #call(pidFile, exportName, ...args) {
    PIDManager.#plugin ??= await Plugin.load();
    if (pidFile === null) {
      return PIDManager.#plugin.call(new LinuxBackend(), realpathSync(process.cwd()), exportName, ...args);
    }
    const [grant, path] = grantFor(pidFile);
    return PIDManager.#plugin.call(new LinuxBackend(), grant, exportName, path, ...args);
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

  static async killStaleProcess(pid, timeoutSeconds = 5) {
    try {
      await PIDManager.#call(null, 'killStaleProcess', pid, BigInt(Math.round(timeoutSeconds * 1000)));
      return true;
    } catch (e) {
      if (e instanceof GuestError) return false;
      throw e;
    }
  }

  static async writePidFile(pidFile) {
    return PIDManager.#call(pidFile, 'writePidFile', undefined);
  }

  static async getProcessOnPort(port) {
    const owner = await PIDManager.#call(null, 'getProcessOnPort', port);
    return owner.tag === 'listener' || owner.tag === 'holder' ? owner.val : null;
  }
}
