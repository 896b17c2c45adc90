// The host's grant, whatever the plugin asks: paths below the granted
// directory, compared step by step as the Rust host's `Grant` does (not as
// string prefixes), and the directory itself for a look at its owner only.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { load } from './package.js';

const { GuestError, granted } = await load('pidman.js');

const denied = (dir, path, options) => assert.throws(
  () => granted(dir, path, options),
  (e) => e instanceof GuestError && e.kind === 'denied',
  `${path} under ${dir}`,
);

test('only paths below the granted directory pass, step by step', () => {
  assert.equal(granted('/proj', '/proj/.bengal.pid'), '/proj/.bengal.pid');
  assert.equal(granted('/proj', '/proj/run/.bengal.pid'), '/proj/run/.bengal.pid');
  denied('/proj', '/proj-other/.bengal.pid');
  denied('/proj', '/proj-other');
  denied('/proj', '/projx');
  denied('/proj', '/pro');
  denied('/proj', '/');
  denied('/proj', '/proj', undefined);
  denied('/proj', '/proj/../etc/passwd');
  denied('/proj', '/proj/./x');
  denied('/proj', '/proj//x');
  denied('/proj', 'proj/x');
  denied('/proj', '');
});

test('the granted directory itself passes only for its owner; `/` grants everything below it', () => {
  assert.equal(granted('/proj', '/proj', { orSelf: true }), '/proj');
  denied('/proj', '/proj-other', { orSelf: true });
  assert.equal(granted('/', '/x.pid'), '/x.pid');
  assert.equal(granted('/', '/a/b'), '/a/b');
  denied('/', '/');
  assert.equal(granted('/', '/', { orSelf: true }), '/');
});
