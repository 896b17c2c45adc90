// A Vite plugin: when the dev server starts, pidman runs the start check
// for the project's PID file and the server's port. A live dev server of
// the same project (the live claimant of that PID file) is named, and
// stopped only when `stopStale` says so; a port held by any other program
// is never touched. Then the PID file is claimed for the dev server's life
// and released when the server closes.
//
// Restarts. Vite restarts a server (`server.restart()`, an edited config
// file, a changed .env) by building the new server first, which runs
// `configureServer` again, and closing the old one after. So the claim
// belongs to this process, not to one server object: each server of the
// process that uses the PID file is one user of the claim, the new server
// takes it over from the old, and the claim ends (the file is removed)
// when its last user closes. A server with an HTTP server ends its use when
// that closes (the `close` event); one without (middleware mode), or one
// that never listened, when Vite runs the `closeServer` hook for it.

import { join } from 'node:path';

import { PIDManager, grantFor } from './index.js';

/** The claims this process holds, by PID file: { claim, users, ending }.
 *  Shared by every copy of this module in the process (a config file Vite
 *  loads again on a restart may bring its own). */
const CLAIMS = Symbol.for('pidman-wasm/vite: claims');
globalThis[CLAIMS] ??= new Map();
const claims = globalThis[CLAIMS];

/** One more user of the claim on `path`: this process's claim if it holds
 *  one (a restart), else a new one, taken by `take()`. */
async function use(path, take) {
  for (;;) {
    const held = claims.get(path);
    if (!held) break;
    // Its last user has closed and the file is being released: wait, then
    // claim afresh.
    if (held.ending) {
      await held.ending.catch(() => {});
      continue;
    }
    held.users += 1;
    try {
      await held.claim;
    } catch (e) {
      held.users -= 1;
      throw e;
    }
    return;
  }
  const entry = { claim: take(), users: 1, ending: null };
  claims.set(path, entry);
  try {
    await entry.claim;
  } catch (e) {
    claims.delete(path);
    throw e;
  }
}

/** One user fewer of the claim on `path`; the last one releases it. */
async function unuse(path) {
  const held = claims.get(path);
  if (!held || held.ending) return;
  held.users -= 1;
  if (held.users > 0) return;
  held.ending = (async () => {
    try {
      await (await held.claim).release();
    } finally {
      claims.delete(path);
    }
  })();
  await held.ending;
}

/** The plugin. `pidFile` defaults to `<cacheDir>/dev-server.pid`
 *  (node_modules/.vite/dev-server.pid). */
export default function pidman({ pidFile, stopStale = false, timeoutSeconds } = {}) {
  // The servers this plugin object was configured into (one config's
  // plugins may serve several: a restart with the same inline config),
  // oldest first, until each ends its use of the claim.
  const serving = [];
  // Ends started by an HTTP server's `close` event, each followed by the
  // `closeServer` hook of the same teardown, which waits for it.
  const closedByEvent = [];

  const end = (entry) => {
    const at = serving.indexOf(entry);
    if (at < 0) return Promise.resolve();
    serving.splice(at, 1);
    return unuse(entry.path);
  };

  /** Claim `path` for this process: the start check first. */
  async function take(file, port, log) {
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
      // This process itself (another server of it) is no other program.
      if (pid !== process.pid) {
        log.warn(`pidman: port ${port} is held by PID ${pid} (\`${command}\`), `
          + 'another program: pidman never touches it');
      }
    }
    const got = await PIDManager.acquire(file);
    if (!got.claimed) {
      const holder = got.holder === null ? 'another pidman' : `PID ${got.holder}`;
      throw new Error(`pidman: ${got.pidFile} is held by ${holder}`);
    }
    return got;
  }

  return {
    name: 'pidman',
    apply: 'serve',
    async configureServer(server) {
      const file = pidFile ?? join(server.config.cacheDir, 'dev-server.pid');
      const [, path] = grantFor(file);
      const http = server.httpServer;
      // Middleware mode has no port of its own to check.
      const port = http ? server.config.server.port ?? 5173 : undefined;
      await use(path, () => take(file, port, server.config.logger));
      const entry = { path, listened: false };
      serving.push(entry);
      if (http) {
        http.once('listening', () => { entry.listened = true; });
        http.once('close', () => { closedByEvent.push(end(entry)); });
      }
    },
    async closeServer() {
      // A server that listened ended its use when its HTTP server closed.
      const ended = closedByEvent.shift();
      if (ended) return ended;
      // Else the oldest that never listened: in a restart that is the old
      // server (the new one was configured after it).
      const entry = serving.find((e) => !e.listened);
      return entry && end(entry);
    },
  };
}
