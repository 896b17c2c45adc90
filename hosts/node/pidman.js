// The pidman plugin component in Node: jco transpiles it (`npm run build`,
// run by `prepack`), this module instantiates it with a backend's
// capabilities and calls its exports. The plugin decides; this module only
// converts and forwards.

import { readFile } from 'node:fs/promises';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import * as cli from '@bytecodealliance/preview2-shim/cli';
import * as clocks from '@bytecodealliance/preview2-shim/clocks';
import * as filesystem from '@bytecodealliance/preview2-shim/filesystem';
import * as io from '@bytecodealliance/preview2-shim/io';
import * as random from '@bytecodealliance/preview2-shim/random';
import { capMemory } from './memory.js';

/** The most linear memory the plugin may use, as the Rust host's limit. */
export const MEMORY_LIMIT_PAGES = (64 * 1024 * 1024) / 65536;

/** The wall-clock budget of a call (plus the call's own timeout, for the
 *  exports that take one), as the Rust host's default. V8 has no fuel: the
 *  call runs under `vm`'s timeout, whose termination also stops wasm. */
export const DEFAULT_BUDGET_MS = 10_000;

/** How many directories keep an instance of the plugin at once. */
const MAX_SESSIONS = 16;

/** The timeout argument (ms, a BigInt) of the exports that take one. */
const TIMEOUT_ARG = { killStaleProcess: 1, clearStale: 3 };

const here = dirname(fileURLToPath(import.meta.url));

/** An error case of the WIT `error` variant: thrown by backends, seen by the guest. */
export class GuestError extends Error {
  constructor(kind, message) {
    super(message ? `${kind}: ${message}` : kind);
    this.kind = kind;
    // jco passes `payload` to the guest as the result's error value.
    this.payload = message === undefined ? { tag: kind } : { tag: kind, val: message };
  }
}

/** The plugin trapped (a bug; out of memory or time): no decision was made,
 *  and its instance is dropped (the next call makes a new one). */
export class PluginTrap extends Error {}

/** The steps of an absolute path with no empty, `.` or `..` step (`/` has
 *  none); null for any other path. */
function steps(path) {
  if (typeof path !== 'string' || !path.startsWith('/')) return null;
  if (path === '/') return [];
  const parts = path.slice(1).split('/');
  return parts.some((p) => p === '' || p === '.' || p === '..') ? null : parts;
}

/** `path` when it names an entry below `grantDir` (or, with `orSelf`, the
 *  directory itself: whose project it is, for a look at its owner); else
 *  the WIT `denied` error: the host's grant, whatever the plugin asks.
 *  Paths compare step by step, as the Rust host's `Grant` does: `/proj-x`
 *  is not below `/proj`, and everything is below `/`. */
export function granted(grantDir, path, { orSelf = false } = {}) {
  const dir = steps(grantDir);
  const p = steps(path);
  const below = dir !== null && p !== null && p.length >= dir.length + (orSelf ? 0 : 1)
    && dir.every((step, i) => p[i] === step);
  if (below) return path;
  throw new GuestError('denied', `${path} is outside the directory granted to the plugin (${grantDir})`);
}

/** The largest number a PID can be (a pid_t is a signed 32-bit integer). */
export const MAX_PID = 2 ** 31 - 1;

/** Why the host refuses to signal `pid` (whose real uid is `owner`, when
 *  known), whatever the plugin asks and whatever the backend: PID 0 (a
 *  process group), PID 1, itself, its parent, a number beyond any PID
 *  and, unless the host runs as root, another user's process; null when it
 *  may. `caller` is the host: `{ pid, parent, uid }` (its effective uid).
 *  The Rust host's `gate::signal_refusal`, the Python host's
 *  `signal_refusal`. */
export function signalRefusal(caller, pid, owner) {
  if (pid === 0) return 'PID 0 is a process group, not a process';
  if (pid === 1) return 'PID 1 is the init process';
  if (pid === caller.pid) return `PID ${pid} is pidman itself`;
  if (pid === caller.parent) return `PID ${pid} is pidman's parent (the caller)`;
  if (!Number.isSafeInteger(pid) || pid < 0 || pid > MAX_PID) return `${pid} is not a PID`;
  if (owner !== undefined && owner !== null && caller.uid !== 0 && owner !== caller.uid) {
    return `PID ${pid} belongs to uid ${owner}, and pidman (uid ${caller.uid}) signals only its own user's processes`;
  }
  return null;
}

/** `signals.send`, past the host's floor (`signalRefusal`): the backend is
 *  asked only for what the floor lets through. */
function send(backend, target, sig) {
  const uid = backend.ownUid();
  let owner;
  if (uid !== 0) { // the owner matters only to a caller that is not root
    try {
      owner = backend.inspect(target.pid).uid;
    } catch (e) {
      if (!(e instanceof GuestError)) throw e;
      owner = undefined; // unreadable or gone: the backend's own checks answer
    }
  }
  const why = signalRefusal({ pid: backend.ownPid(), parent: backend.parentPid(), uid }, target.pid, owner);
  if (why) throw new GuestError('denied', `the host refuses to signal: ${why}`);
  return backend.send(target.pid, target.startToken, sig);
}

// wasi-libc asks for `mutate-directory` when it creates a file; the shim
// refuses that flag outright, where wasmtime does not enforce it at all
// (bytecodealliance/wasmtime#11667) and the flag's definition allows a
// POSIX layer to set it on every open-at (WebAssembly/wasi-filesystem#91).
// No jco issue for the shim's refusal was found. pidman clears the flag on
// its own descriptors only: the preopen it hands the plugin, and every
// descriptor opened from it. Nothing else in the process changes.
const scopedDescriptors = new WeakSet();
function scoped(descriptor) {
  if (scopedDescriptors.has(descriptor)) return descriptor;
  scopedDescriptors.add(descriptor);
  const openAt = descriptor.openAt;
  Object.defineProperty(descriptor, 'openAt', {
    value(pathFlags, path, openFlags, descriptorFlags) {
      const flags = openFlags.directory ? descriptorFlags : { ...descriptorFlags, mutateDirectory: false };
      return scoped(openAt.call(this, pathFlags, path, openFlags, flags));
    },
  });
  return descriptor;
}

/** A held lock (the WIT `lock` resource): one class for every instance,
 *  so that a claim taken in one instance can be ended in another (after a
 *  trap dropped the first). Dropping it releases the lock. */
export class Lock {
  constructor(backend, held) { this.backend = backend; this.held = held; this.released = false; }

  /** Release it, once (a second call never closes a descriptor that has
   *  been reused meanwhile). */
  [Symbol.dispose || Symbol.for('dispose')]() {
    if (this.released) return;
    this.released = true;
    this.backend.release(this.held);
  }
}

/** The WIT imports of pidman's capabilities (keys without @version, as jco
 *  wants), for the call `ctx` describes: its backend, log and grant. */
function capabilities(ctx) {
  const b = () => ctx.backend;
  return {
    'bengal:pid-manager/types': {},
    'bengal:pid-manager/process-table': {
      ownPid: () => b().ownPid(),
      parentPid: () => b().parentPid(),
      ownUid: () => b().ownUid(),
      state: (pid) => b().state(pid),
      inspect: (pid) => b().inspect(pid),
      snapshot: () => b().snapshot(),
    },
    'bengal:pid-manager/signals': {
      send: (target, sig) => send(b(), target, sig),
      waitExit: (target, ms) => b().waitExit(target.pid, target.startToken, Number(ms)),
      clockMs: () => b().clockMs(),
    },
    'bengal:pid-manager/ports': {
      sockets: (port, listening) => b().sockets(port, listening),
      owner: (handle) => b().socketOwner(handle),
    },
    'bengal:pid-manager/files': {
      Lock,
      owner: (path) => b().fileOwner(granted(ctx.grantDir, path, { orSelf: true })),
      tryLock: (path, waitMs) => {
        const backend = b();
        const held = backend.tryLock(granted(ctx.grantDir, path), waitMs);
        return held === undefined ? undefined : new Lock(backend, held);
      },
    },
    'bengal:pid-manager/log': {
      // Kept at the call's level or above (a plugin from before
      // set-log-level sends every message).
      emit: (level, message) => {
        if (ctx.logLevel !== null && LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(ctx.logLevel)) {
          ctx.log.push(`${level}: ${message}`);
        }
      },
    },
  };
}

/** The levels `Plugin.logLevel` takes, least first; null: no message. */
const LOG_LEVELS = ['debug', 'info', 'warn', null];

/** Unwrap an export's thrown ComponentError into a GuestError. */
function guestError(e) {
  if (e && e.payload && typeof e.payload.tag === 'string') {
    return new GuestError(e.payload.tag, e.payload.val);
  }
  return e;
}

/** One compiled plugin, and one instance of it per directory it may use:
 *  kept across calls, dropped when it traps. */
export class Plugin {
  /** The plugin jco transpiled into `gen` (by default this package's). */
  static async load({ gen = join(here, 'gen') } = {}) {
    const { instantiate } = await import(join(gen, 'pidman.js'));
    const modules = new Map();
    const getCoreModule = async (path) => {
      if (!modules.has(path)) {
        const bytes = capMemory(await readFile(join(gen, path)), MEMORY_LIMIT_PAGES);
        modules.set(path, await WebAssembly.compile(bytes));
      }
      return modules.get(path);
    };
    return new Plugin(instantiate, getCoreModule);
  }

  constructor(instantiate, getCoreModule) {
    this.instantiate = instantiate;
    this.getCoreModule = getCoreModule;
    this.sessions = new Map();
    this.log = [];
    this.logLevel = 'warn';
    this.budgetMs = DEFAULT_BUDGET_MS;
    // One context and one script for every call's time budget (a new
    // context per call costs about a millisecond).
    this.guard = vm.createContext({ run: null });
    this.script = new vm.Script('run()');
  }

  async #session(grantDir) {
    let session = this.sessions.get(grantDir);
    if (session) return session;
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value);
    const ctx = { backend: null, log: [], logLevel: 'warn', grantDir };
    // The instance's own filesystem namespace, with its one directory: the
    // shim's process-wide preopens (which every other jco component in the
    // process sees) are never read or changed.
    const fs = filesystem.createFilesystem({ preopens: { [grantDir]: grantDir } });
    const preopens = {
      getDirectories: () => fs.preopens.getDirectories().map(([descriptor, path]) => [scoped(descriptor), path]),
    };
    const root = await this.instantiate(this.getCoreModule, {
      ...capabilities(ctx),
      'wasi:cli/environment': cli.environment,
      'wasi:cli/exit': cli.exit,
      'wasi:cli/stdin': cli.stdin,
      'wasi:cli/stdout': cli.stdout,
      'wasi:cli/stderr': cli.stderr,
      'wasi:cli/terminal-input': cli.terminalInput,
      'wasi:cli/terminal-output': cli.terminalOutput,
      'wasi:cli/terminal-stdin': cli.terminalStdin,
      'wasi:cli/terminal-stdout': cli.terminalStdout,
      'wasi:cli/terminal-stderr': cli.terminalStderr,
      'wasi:clocks/monotonic-clock': clocks.monotonicClock,
      'wasi:clocks/wall-clock': clocks.wallClock,
      'wasi:filesystem/preopens': preopens,
      'wasi:filesystem/types': fs.types,
      'wasi:io/error': io.error,
      'wasi:io/poll': io.poll,
      'wasi:io/streams': io.streams,
      'wasi:random/random': random.random,
      'wasi:random/insecure-seed': random.insecureSeed,
    });
    const manager = root.manager ?? root['bengal:pid-manager/manager@0.1.0'];
    // logLevel: what this instance was last told to send (undefined: never
    // told, so it sends every message).
    session = { ctx, manager, logLevel: undefined };
    this.sessions.set(grantDir, session);
    return session;
  }

  /** Call `exportName` of the manager interface on `backend`, in the
   *  instance for `grantDir`. */
  async call(backend, grantDir, exportName, ...args) {
    const level = this.logLevel;
    if (!LOG_LEVELS.includes(level)) {
      throw new TypeError(`logLevel must be one of 'debug', 'info', 'warn' or null, not ${String(level)}`);
    }
    const session = await this.#session(grantDir);
    session.ctx.backend = backend;
    session.ctx.log = this.log = [];
    session.ctx.logLevel = level;
    const own = TIMEOUT_ARG[exportName] === undefined ? undefined : args[TIMEOUT_ARG[exportName]];
    const timeout = this.budgetMs + (own === undefined ? 0 : Number(own));
    this.guard.run = () => {
      // The instance is told the level only when it changes: a message
      // below it never crosses into JavaScript (a crossing saved each).
      if (session.logLevel !== level) {
        // A plugin from before set-log-level sends every message.
        session.manager.setLogLevel?.(level ?? undefined);
        session.logLevel = level;
      }
      return session.manager[exportName](...args);
    };
    try {
      return this.script.runInContext(this.guard, { timeout });
    } catch (e) {
      const answer = guestError(e);
      if (answer instanceof GuestError) throw answer;
      this.sessions.delete(grantDir);
      if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
        throw new PluginTrap(`the plugin ran past its time budget of ${timeout} ms and was stopped`);
      }
      throw new PluginTrap(`the plugin trapped: ${e && e.message}`, { cause: e });
    }
  }
}
