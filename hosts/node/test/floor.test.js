// The host's signal floor, whatever the backend: pidman.js refuses PID 0,
// PID 1, the host itself and its parent, a number beyond any PID and
// (unless the host runs as root) another user's process before any
// backend is asked to signal (as the Rust host's gate.rs and the Python
// host's `signal_refusal`). Proven with a backend that would signal
// anything.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { load } from './package.js';

const { GuestError, Plugin, signalRefusal } = await load('pidman.js');
// The simulated backend is the source tree's (it is not in the package),
// as the conformance and limits tests take it.
import { SimBackend, OWN_PID, PARENT_PID, UID } from '../simulated.js';

/** A backend that signals whatever it is asked to (and records it). */
class Obliging extends SimBackend {
  constructor() {
    super();
    this.sent = [];
  }

  send(pid, token, sig) { this.sent.push([pid, sig]); }
}

const root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-node-floor-')));

test('the floor refuses PID 1, the host and its parent whatever the backend', async () => {
  const gen = join(dirname(fileURLToPath(import.meta.url)), 'gen-broken');
  const broken = await Plugin.load({ gen });
  const backend = new Obliging();
  // The broken plugin asks for SIGTERM to PID 1, the host and its parent.
  await assert.rejects(broken.call(backend, root, 'planStop', 5), (e) => {
    assert.ok(e instanceof GuestError, String(e));
    assert.equal(e.message.match(/denied/g)?.length, 3 + 1, e.message); // the kind, and each answer
    return true;
  });
  assert.deepEqual(backend.sent, [], 'the backend was never asked');
});

test('the floor refuses what is not a PID whatever the backend', async () => {
  // A Bengal server at a number beyond any PID, in a backend that would
  // signal it: the plugin asks, the host's floor refuses. (Another user's
  // server too, though the plugin declines that one itself: the floor's
  // own rule for it is proven by the next test.)
  const plugin = await Plugin.load();
  const beyond = 2 ** 31 + 5;
  const other = 4242;
  for (const [pid, uid] of [[beyond, UID], [other, 2000]]) {
    const backend = new Obliging();
    backend.add(pid, SimBackend.process(['bengal', 'serve'], backend.nowMs - 5000, uid));
    try {
      await plugin.call(backend, root, 'killStaleProcess', pid, 100n);
    } catch (e) {
      if (!(e instanceof GuestError)) throw e;
    }
    assert.deepEqual(backend.sent, [], `PID ${pid} (uid ${uid}): the backend was never asked`);
  }
});

test('the floor itself: what it refuses, and why', () => {
  const caller = { pid: OWN_PID, parent: PARENT_PID, uid: 1000 };
  assert.equal(signalRefusal(caller, 4242, 1000), null);
  assert.equal(signalRefusal(caller, 4242, undefined), null, 'an owner unknown is left to the kernel');
  assert.match(signalRefusal(caller, 4242, 0), /uid 0/);
  assert.match(signalRefusal(caller, 4242, 2000), /uid 2000/);
  assert.equal(signalRefusal({ ...caller, uid: 0 }, 4242, 2000), null, 'root may');
  for (const pid of [0, 1, OWN_PID, PARENT_PID, 2 ** 31, 2 ** 32 - 1]) {
    assert.ok(signalRefusal({ ...caller, uid: 0 }, pid, undefined), String(pid));
  }
});
