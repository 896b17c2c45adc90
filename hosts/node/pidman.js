// The pidman plugin component in Node: jco transpiles it (npm run build),
// this module instantiates it with a backend's capabilities and calls its
// exports. The plugin decides; this module only converts and forwards.

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

/** The timeout argument (ms, a BigInt) of the exports that take one. */
const TIMEOUT_ARG = { killStaleProcess: 1, clearStale: 3 };

const here = dirname(fileURLToPath(import.meta.url));

// wasi-libc asks for `mutate-directory` when it creates a file; the shim
// refuses that flag outright, where wasmtime grants it within the
// preopen's permissions. Clear it for opens that are not of directories.
const { Descriptor } = filesystem.types;
const openAt = Descriptor.prototype.openAt;
Descriptor.prototype.openAt = function (pathFlags, path, openFlags, descriptorFlags) {
  const flags = openFlags.directory ? descriptorFlags : { ...descriptorFlags, mutateDirectory: false };
  return openAt.call(this, pathFlags, path, openFlags, flags);
};

/** An error case of the WIT `error` variant: thrown by backends, seen by the guest. */
export class GuestError extends Error {
  constructor(kind, message) {
    super(message ? `${kind}: ${message}` : kind);
    this.kind = kind;
    // jco passes `payload` to the guest as the result's error value.
    this.payload = message === undefined ? { tag: kind } : { tag: kind, val: message };
  }
}

/** A backend bound to the WIT imports (keys without @version, as jco wants). */
/** `path` when it names an entry below `grantDir` (absolute, no `.` or `..`
 *  steps); else the WIT `denied` error: the host's grant, whatever the
 *  plugin asks. */
function granted(grantDir, path) {
  const parts = path.split('/');
  const plain = path.startsWith('/') && !parts.slice(1).some((p) => p === '' || p === '.' || p === '..');
  if (plain && path.startsWith(`${grantDir}/`)) return path;
  throw new GuestError('denied', `${path} is outside the directory granted to the plugin (${grantDir})`);
}

function capabilities(backend, log, grantDir) {
  class Lock {
    constructor(held) { this.held = held; }
    [Symbol.dispose || Symbol.for('dispose')]() { backend.release(this.held); }
  }
  return {
    'bengal:pid-manager/types': {},
    'bengal:pid-manager/process-table': {
      ownPid: () => backend.ownPid(),
      parentPid: () => backend.parentPid(),
      ownUid: () => backend.ownUid(),
      state: (pid) => backend.state(pid),
      inspect: (pid) => backend.inspect(pid),
    },
    'bengal:pid-manager/signals': {
      send: (target, sig) => backend.send(target.pid, target.startToken, sig),
      waitExit: (target, ms) => backend.waitExit(target.pid, target.startToken, Number(ms)),
    },
    'bengal:pid-manager/ports': {
      sockets: (port, listening) => backend.sockets(port, listening),
      owner: (handle) => backend.socketOwner(handle),
    },
    'bengal:pid-manager/files': {
      Lock,
      owner: (path) => backend.fileOwner(granted(grantDir, path)),
      tryLock: (path, waitMs) => {
        const held = backend.tryLock(granted(grantDir, path), waitMs);
        return held === undefined ? undefined : new Lock(held);
      },
    },
    'bengal:pid-manager/log': {
      emit: (level, message) => log.push(`${level}: ${message}`),
    },
  };
}

/** Unwrap an export's thrown ComponentError into a GuestError. */
function guestError(e) {
  if (e && e.payload && typeof e.payload.tag === 'string') {
    return new GuestError(e.payload.tag, e.payload.val);
  }
  return e;
}

/** One compiled plugin; each call instantiates it afresh on `backend`, with
 *  only `grantDir` preopened. */
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
    this.log = [];
    this.budgetMs = DEFAULT_BUDGET_MS;
  }

  async call(backend, grantDir, exportName, ...args) {
    filesystem._setPreopens({ [grantDir]: grantDir });
    this.log = [];
    const root = await this.instantiate(this.getCoreModule, {
      ...capabilities(backend, this.log, grantDir),
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
      'wasi:filesystem/preopens': filesystem.preopens,
      'wasi:filesystem/types': filesystem.types,
      'wasi:io/error': io.error,
      'wasi:io/poll': io.poll,
      'wasi:io/streams': io.streams,
      'wasi:random/random': random.random,
      'wasi:random/insecure-seed': random.insecureSeed,
    });
    const manager = root.manager ?? root['bengal:pid-manager/manager@0.1.0'];
    const own = TIMEOUT_ARG[exportName] === undefined ? undefined : args[TIMEOUT_ARG[exportName]];
    const timeout = this.budgetMs + (own === undefined ? 0 : Number(own));
    try {
      return vm.runInNewContext('run()', { run: () => manager[exportName](...args) }, { timeout });
    } catch (e) {
      if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
        throw new Error(`the plugin ran past its time budget of ${timeout} ms and was stopped`);
      }
      throw guestError(e);
    }
  }
}
