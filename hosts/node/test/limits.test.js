// The host's limits in Node, proven with the deliberately broken plugin
// (tests/plugins/broken, transpiled into test/gen-broken by `npm test`):
// each misbehaviour is stopped and reported; the host carries on.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SimBackend } from '../simulated.js';
import { load } from './package.js';

const { GuestError, Plugin } = await load('pidman.js');
const linux = process.platform === 'linux';
const { LinuxBackend } = linux ? await load('linux.js') : {};

const gen = join(dirname(fileURLToPath(import.meta.url)), 'gen-broken');
let plugin;
let root;
before(async () => {
  plugin = await Plugin.load({ gen });
  plugin.budgetMs = 300;
  root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-node-limits-')));
});

test('an endless loop is stopped by the time budget', async () => {
  await assert.rejects(
    plugin.call(new SimBackend(), root, 'checkStalePid', join(root, '.bengal.pid')),
    /time budget/,
  );
});

test('a wait for exit asked for forever is stopped by the time budget', async () => {
  await assert.rejects(
    plugin.call(new SimBackend(), root, 'removePidFile', join(root, '.bengal.pid'), undefined),
    /time budget/,
  );
});

test('unbounded allocation is stopped at the memory limit', async () => {
  await assert.rejects(
    plugin.call(new SimBackend(), root, 'isBengalProcess', 5),
    (e) => e.cause instanceof WebAssembly.RuntimeError,
  );
});

test('the host carries on after each', async () => {
  assert.equal(await plugin.call(new SimBackend(), root, 'getPidFile', root), `${root}/.bengal.pid`);
});

test('a symlinked directory inside the grant leads nowhere', { skip: !linux && 'the real backend is Linux only' }, async () => {
  // `escape-link` is a symlink, inside the grant, to a directory outside
  // it: the grant's path check passes `<root>/escape-link/...`, and the
  // host must still follow no symlink on the way (the Rust host's test of
  // the same name).
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-node-escape-')));
  const outside = join(base, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'x');
  const grant = join(base, 'symlink-escape');
  mkdirSync(grant);
  symlinkSync(outside, join(grant, 'escape-link'));
  const planted = join(outside, 'planted.lock');
  await assert.rejects(
    plugin.call(new LinuxBackend(), grant, 'checkStalePid', join(grant, '.bengal.pid')),
    (e) => {
      assert.ok(e instanceof GuestError, String(e));
      assert.match(e.message, /owner: Err\((Error::)?Untrusted\(.*escape-link.*symlink/);
      assert.match(e.message, /lock: Err\((Error::)?Untrusted\(.*symlink/);
      return true;
    },
  );
  assert.ok(!existsSync(planted), 'nothing created outside the grant');
  // The backend's own answers, as the WIT error cases they are.
  const backend = new LinuxBackend();
  for (const ask of [
    () => backend.fileOwner(join(grant, 'escape-link', 'secret')),
    () => backend.tryLock(join(grant, 'escape-link', 'planted.lock'), 0),
  ]) {
    assert.throws(ask, (e) => e instanceof GuestError && e.kind === 'untrusted'
      && /escape-link/.test(e.message) && /never follows/.test(e.message));
  }
  assert.ok(!existsSync(planted), 'nothing created outside the grant');
  // The last step may be a symlink for `owner` (it reports one, never its
  // target); a lock is never taken through one.
  symlinkSync(planted, join(grant, 'lock-link'));
  assert.equal(backend.fileOwner(join(grant, 'lock-link')).symlink, true);
  assert.throws(() => backend.tryLock(join(grant, 'lock-link'), 0), (e) => e instanceof GuestError && e.kind === 'untrusted');
  assert.ok(!existsSync(planted), 'nothing created outside the grant');
  // What lies plainly beneath the grant still works.
  mkdirSync(join(grant, 'run'));
  const held = backend.tryLock(join(grant, 'run', 'x.lock'), 0);
  assert.notEqual(held, undefined);
  assert.equal(backend.fileOwner(join(grant, 'run', 'x.lock')).symlink, false);
  assert.equal(backend.fileOwner(grant).symlink, false);
  backend.release(held);
});
