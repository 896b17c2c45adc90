// A Node claim and a claim of the Rust host (`pidman acquire`, `pidman
// run`) exclude each other: both are flock(2) on `<pid-file>.lock`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { load } from './package.js';

const { PIDManager } = await load('index.js');
const pidman = process.env.PIDMAN_BIN;
const skip = pidman ? false : 'SKIP: set PIDMAN_BIN to the pidman binary (hosts/test.sh does)';
if (skip) process.stdout.write(`${skip}\n`);

const project = () => realpathSync(mkdtempSync(join(tmpdir(), 'pidman-interop-')));

test('a Node claim keeps `pidman acquire` out', { skip }, async () => {
  const pidFile = join(project(), '.bengal.pid');
  const claim = await PIDManager.acquire(pidFile);
  assert.equal(claim.claimed, true);
  const other = spawnSync(pidman, ['acquire', '--pid-file', pidFile, '--pid', String(process.pid)], { encoding: 'utf8' });
  assert.equal(other.status, 1, other.stdout + other.stderr);
  assert.match(other.stdout, new RegExp(`held by live server ${process.pid}`));
  assert.equal(await claim.release(), true);
  const after = spawnSync(pidman, ['acquire', '--pid-file', pidFile, '--pid', String(process.pid)], { encoding: 'utf8' });
  assert.equal(after.status, 0, after.stdout + after.stderr);
});

test('`pidman run` keeps a Node claim out, naming its server', { skip }, async () => {
  const root = project();
  const run = spawn(pidman, ['--root', root, 'run', '--', 'sleep', '30'], { stdio: 'ignore' });
  try {
    const pidFile = join(root, '.bengal.pid');
    let named = null;
    for (let i = 0; i < 500 && named === null; i += 1) {
      try {
        const pid = Number(readFileSync(pidFile, 'utf8'));
        if (pid && pid !== run.pid) named = pid;
      } catch { /* not written yet */ }
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(named, 'run handed its claim to the server');
    const held = await PIDManager.acquire(pidFile);
    assert.equal(held.claimed, false);
    assert.equal(held.holder, named);
  } finally {
    run.kill('SIGTERM');
    await new Promise((r) => run.once('exit', r));
  }
});
