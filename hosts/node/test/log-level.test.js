// Plugin.logLevel: a message below it never leaves the plugin (the
// instance is told the level once, when it changes, through the
// set-log-level export), so a dead PID's check makes no `log.emit` call
// into JavaScript by default. On the real OS, with a PID that no process
// has (a child started and reaped by the test).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { load } from './package.js';

const { Plugin } = await load('pidman.js');
const { LinuxBackend } = await load('linux.js');

const root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-node-log-')));
const pidFile = join(root, '.bengal.pid');
/** A PID that no process has now: a child's, after it was reaped. */
const deadPid = spawnSync('true').pid;

/** A dead PID's check at the plugin's present level: what it logged. */
async function deadCheck(plugin) {
  writeFileSync(pidFile, `${deadPid}\n`);
  assert.equal(await plugin.call(new LinuxBackend(), root, 'checkStalePid', pidFile), undefined);
  assert.equal(existsSync(pidFile), false, 'the stale file was removed');
  return plugin.log;
}

test('by default only warnings cross; debug brings every step back', async () => {
  const plugin = await Plugin.load();
  assert.equal(plugin.logLevel, 'warn');
  assert.deepEqual(await deadCheck(plugin), [], 'no message of a plain removal crossed');
  // The same (pooled) instance, told again each time the level changes.
  plugin.logLevel = 'debug';
  const steps = await deadCheck(plugin);
  assert.ok(steps.some((line) => line.includes(`PID ${deadPid} is not running`)), steps.join('\n'));
  assert.ok(steps.some((line) => line.startsWith('info: ')), steps.join('\n'));
  plugin.logLevel = 'info';
  const decisions = await deadCheck(plugin);
  assert.ok(decisions.length > 0 && decisions.every((line) => line.startsWith('info: ')), decisions.join('\n'));
  plugin.logLevel = null;
  assert.deepEqual(await deadCheck(plugin), []);
  plugin.logLevel = 'debug';
  assert.ok((await deadCheck(plugin)).length >= steps.length);
});

test('a level that is not one is refused before the plugin runs', async () => {
  const plugin = await Plugin.load();
  for (const bad of ['trace', 'WARN', 0, undefined]) {
    plugin.logLevel = bad;
    writeFileSync(pidFile, `${deadPid}\n`);
    await assert.rejects(plugin.call(new LinuxBackend(), root, 'checkStalePid', pidFile), TypeError);
    assert.equal(existsSync(pidFile), true, 'nothing was decided');
  }
});
