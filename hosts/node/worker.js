// The thread PIDManager's plugin runs in. The plugin's imports are
// synchronous, and some of them wait (for a process to exit, for a lock):
// here they block this worker only, never the caller's event loop. This
// worker also has its own copy of the preview2 shim's modules, so nothing
// pidman does reaches another jco component of the process.
//
// Messages: { id, grant, exportName, args } in; { id, value } or
// { id, error } out, one call at a time, in order. A held lock (a claim)
// stays here, in `locks`, for as long as the caller's Claim holds it; the
// caller knows it by number ({ pidmanLock: n }).

import { parentPort } from 'node:worker_threads';

import { GuestError, Lock, Plugin, PluginTrap } from './pidman.js';
import { LinuxBackend } from './linux.js';

/** The key under which a lock travels, by number, to the caller and back. */
const LOCK_REF = 'pidmanLock';

const locks = new Map();
let lastLock = 0;

/** An argument as the plugin takes it: a lock's number as the lock. */
function inward(arg) {
  if (arg === null || typeof arg !== 'object' || !(LOCK_REF in arg)) return arg;
  const lock = locks.get(arg[LOCK_REF]);
  if (!lock) throw new Error(`no lock ${arg[LOCK_REF]} is held here (already released?)`);
  return lock;
}

/** A result as the caller gets it: a claim's lock as its number. */
function outward(value) {
  if (value && value.tag === 'claimed' && value.val instanceof Lock) {
    lastLock += 1;
    locks.set(lastLock, value.val);
    return { tag: 'claimed', val: { [LOCK_REF]: lastLock } };
  }
  return value;
}

/** An error as plain data (the caller makes the same class again). */
function described(e) {
  if (e instanceof GuestError) return { type: 'guest', kind: e.kind, detail: e.payload.val };
  if (e instanceof PluginTrap) {
    const cause = e.cause && { name: e.cause.name, message: e.cause.message };
    return { type: 'trap', message: e.message, cause };
  }
  return { type: 'error', name: e?.name, message: e?.message ?? String(e), stack: e?.stack };
}

// A plugin that fails to load fails each call with that error; the worker
// itself carries on.
const loaded = Plugin.load();
loaded.catch(() => {});

async function handle({ id, grant, exportName, args }) {
  let ending = null;
  try {
    const plugin = await loaded;
    const plain = args.map(inward);
    // `release` takes its lock (an owned handle): whatever the answer, the
    // claim has ended, and the lock is let go below if the plugin did not.
    if (exportName === 'release') {
      ending = plain[0];
      locks.delete(args[0][LOCK_REF]);
    }
    const value = await plugin.call(new LinuxBackend(), grant, exportName, ...plain);
    parentPort.postMessage({ id, value: outward(value) });
  } catch (e) {
    parentPort.postMessage({ id, error: described(e) });
  } finally {
    ending?.[Symbol.dispose || Symbol.for('dispose')]();
  }
}

let queue = Promise.resolve();
parentPort.on('message', (message) => {
  queue = queue.then(() => handle(message));
});
