// The host's limits in Node, proven with the deliberately broken plugin
// (tests/plugins/broken, transpiled into test/gen-broken by `npm test`):
// each misbehaviour is stopped and reported; the host carries on.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SimBackend } from '../simulated.js';
import { load } from './package.js';

const { Plugin } = await load('pidman.js');

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
