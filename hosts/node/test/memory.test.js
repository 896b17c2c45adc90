// The plugin's memory limit in Node: the cap written into a core module
// holds, `memory.grow` past it fails, and the real plugin still loads.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { load } from './package.js';

const { capMemory } = await load('memory.js');

// (module (memory (export "mem") 1)): a memory with no maximum.
const module = Uint8Array.of(
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x05, 0x03, 0x01, 0x00, 0x01,
  0x07, 0x07, 0x01, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00,
);

test('a memory without a maximum grows freely, and not once capped', async () => {
  const free = new WebAssembly.Instance(await WebAssembly.compile(module)).exports.mem;
  assert.equal(free.grow(100), 1);
  const capped = new WebAssembly.Instance(await WebAssembly.compile(capMemory(module, 16))).exports.mem;
  assert.equal(capped.grow(15), 1, 'up to the cap');
  assert.throws(() => capped.grow(1), RangeError, 'never past it');
});

test('a lower maximum stays, and a minimum over the cap is refused', async () => {
  // (memory 1 4): flags 1, min 1, max 4.
  const withMax = Uint8Array.of(...module.subarray(0, 8), 0x05, 0x04, 0x01, 0x01, 0x01, 0x04, ...module.subarray(13));
  const mem = new WebAssembly.Instance(await WebAssembly.compile(capMemory(withMax, 16))).exports.mem;
  assert.throws(() => mem.grow(4), RangeError);
  assert.throws(() => capMemory(module, 0), /over the limit/);
});
