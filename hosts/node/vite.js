// A Vite plugin: when the dev server starts, pidman runs the start check
// for the project's PID file and the server's port. A live dev server of
// the same project (the live claimant of that PID file) is named, and
// stopped only when `stopStale` says so; a port held by any other program
// is never touched. Then the PID file is claimed for the dev server's life
// and released when the server closes.

import { join } from 'node:path';

import { PIDManager } from './index.js';

/** The plugin. `pidFile` defaults to `<cacheDir>/dev-server.pid`
 *  (node_modules/.vite/dev-server.pid). */
export default function pidman({ pidFile, stopStale = false, timeoutSeconds } = {}) {
  let claim = null;
  return {
    name: 'pidman',
    apply: 'serve',
    async configureServer(server) {
      const file = pidFile ?? join(server.config.cacheDir, 'dev-server.pid');
      const port = server.config.server.port ?? 5173;
      const log = server.config.logger;
      const report = await PIDManager.preflight(file, { port });
      const other = report.server;
      // The plugin never names the caller: `other` is another process.
      if (other) {
        const who = `PID ${other.identity.pid} (\`${other.command}\`)`;
        if (!stopStale) {
          throw new Error(`pidman: a dev server of this project is running: ${who}; `
            + `PID file ${file}. Stop it, or set stopStale in the pidman plugin's options.`);
        }
        const cleared = await PIDManager.clearStale(file, other, { port, timeoutSeconds });
        const more = cleared.stopped.members.length - 1;
        log.info(`pidman: stopped ${who}${more > 0 ? ` and ${more} more of its tree` : ''} (${cleared.outcome})`);
      }
      if (report.port.tag === 'held-by-other') {
        const { pid, command } = report.port.val.lineage[0];
        log.warn(`pidman: port ${port} is held by PID ${pid} (\`${command}\`), `
          + 'another program: pidman never touches it');
      }
      const got = await PIDManager.acquire(file);
      if (!got.claimed) {
        throw new Error(`pidman: ${got.pidFile} is held by ${got.holder === null ? 'another pidman' : `PID ${got.holder}`}`);
      }
      claim = got;
      const release = () => {
        const ending = claim;
        claim = null;
        return ending?.release();
      };
      server.httpServer?.once('close', release);
    },
  };
}
