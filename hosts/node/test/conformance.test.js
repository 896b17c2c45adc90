// The conformance scenarios (tests/conformance/*.json) through the Node
// host: the same plugin, a simulated world, the same decisions as the Rust
// and Python hosts.

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, realpathSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SimBackend } from '../simulated.js';
import { load } from './package.js';

const { GuestError, Plugin } = await load('pidman.js');

const scenarioDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'tests', 'conformance');
let plugin;
before(async () => { plugin = await Plugin.load(); });

function arrange(sim, root, world) {
  const pidFile = join(root, '.bengal.pid');
  for (const p of world.processes) {
    sim.add(p.pid, SimBackend.process(p.argv, sim.nowMs - p.started_ms_ago, p.uid, {
      zombie: p.zombie, onTerm: p.on_term === 'ignore' ? null : p.term_delay_ms, unkillable: p.unkillable,
      parent: p.ppid ?? 1, group: p.pgid ?? p.pid, session: p.sid ?? 0, respawn: p.respawn ?? false,
    }));
  }
  sim.socketList.push(...world.sockets.map((s) => ({ ...s })));
  if (world.lock_held_elsewhere) sim.locksHeldElsewhere.add(`${pidFile}.lock`);
  sim.lockError = world.lock_error ?? null;
  // The held lock's record of its claimant, which holds it itself:
  // `<pid> <start token> <group: 0, none> <holder pid> <holder token>`.
  const named = world.lock_names;
  if (named !== undefined && named !== null) {
    const start = sim.processes.get(named).start;
    writeFileSync(`${pidFile}.lock`, `${named} ${start} 0 ${named} ${start}\n`);
  }
  // A claim record nobody holds: `{start:PID}` is PID's start token.
  if (typeof world.lock_file === 'string') {
    writeFileSync(`${pidFile}.lock`,
      world.lock_file.replace(/\{start:(\d+)\}/g, (_, pid) => String(sim.processes.get(Number(pid)).start)));
  }
  const f = world.pid_file;
  if (!f) return;
  const real = f.symlink ? join(root, 'elsewhere.pid') : pidFile;
  if (f.symlink) symlinkSync(real, pidFile);
  writeFileSync(real, f.contents);
  const written = (Date.now() - f.written_ms_ago) / 1000;
  utimesSync(real, written, written);
  chmodSync(real, f.mode);
  if (f.owner_uid !== undefined) sim.fileOwners.set(pidFile, f.owner_uid);
}

/** The port-holder a port status carries, if any. */
const holderOf = (status) => (['held-by-server', 'held-by-other'].includes(status.tag) ? status.val : null);

/** A preflight report in the scenarios' notation (every key; the test
 *  compares those the scenario names). */
function preflightValue(report) {
  const holder = holderOf(report.port);
  return {
    verdict: report.verdict,
    server: report.server ? report.server.identity.pid : null,
    tree: report.server ? report.server.tree.map((m) => m.identity.pid) : [],
    port: report.port.tag,
    lineage: holder ? holder.lineage.map((e) => e.pid) : null,
  };
}

/** A port-description in the scenarios' notation. */
function descriptionValue(d) {
  if (d.tag === 'free') return 'free';
  if (d.tag === 'unknown') return { unknown: d.val };
  return {
    listening: d.val.listening,
    lineage: d.val.lineage.map((e) => [e.pid, e.role]),
    orphan_of: d.val.orphanOf ? d.val.orphanOf.pid : null,
  };
}

const membersOf = (report) => report.members.map((m) => [m.pid, m.outcome]);

/** The call's result in the scenarios' notation, and the members of the
 *  stop report (kill and clear; else null). */
async function outcome(sim, root, call) {
  const pidFile = join(root, '.bengal.pid');
  const opt = (v) => (v === undefined || v === null ? undefined : v);
  let members = null;
  try {
    let value;
    switch (call.op) {
      case 'check':
        value = (await plugin.call(sim, root, 'checkStalePid', pidFile)) ?? null;
        break;
      case 'kill': {
        const ms = call.timeout_ms === undefined ? undefined : BigInt(call.timeout_ms);
        const report = await plugin.call(sim, root, 'killStaleProcess', call.pid, ms);
        value = report.outcome;
        members = membersOf(report);
        break;
      }
      case 'plan':
        value = (await plugin.call(sim, root, 'planStop', call.pid)).map((m) => m.identity.pid);
        break;
      case 'describe-port':
        value = descriptionValue(await plugin.call(sim, root, 'describePort', call.port, pidFile));
        break;
      case 'port': {
        const owner = await plugin.call(sim, root, 'getProcessOnPort', call.port);
        value = owner.val === undefined ? owner.tag : { [owner.tag]: owner.val };
        break;
      }
      case 'preflight': {
        value = preflightValue(await plugin.call(sim, root, 'preflight', pidFile, opt(call.port)));
        break;
      }
      case 'acquire': {
        const claim = await plugin.call(sim, root, 'acquire', pidFile, opt(call.pid));
        value = claim.tag === 'claimed' ? { claimed: true } : { held: claim.val.pid ?? null };
        break;
      }
      case 'write':
        value = await plugin.call(sim, root, 'writePidFile', pidFile, opt(call.pid));
        break;
      case 'remove':
        value = await plugin.call(sim, root, 'removePidFile', pidFile, opt(call.pid));
        break;
      case 'is-bengal':
        value = await plugin.call(sim, root, 'isBengalProcess', call.pid);
        break;
      case 'clear': {
        const report = await plugin.call(sim, root, 'preflight', pidFile, opt(call.port));
        if (!report.server) {
          value = 'no-server';
        } else {
          const ms = call.timeout_ms === undefined ? undefined : BigInt(call.timeout_ms);
          const cleared = await plugin.call(sim, root, 'clearStale', pidFile, report.server, opt(call.port), ms);
          value = cleared.stopped.outcome;
          members = membersOf(cleared.stopped);
        }
        break;
      }
      default:
        throw new Error(`unknown op ${call.op}`);
    }
    return [{ ok: value }, members];
  } catch (e) {
    if (e instanceof GuestError) return [{ error: e.kind }, null];
    throw e;
  }
}

/** `result`, with a preflight's answer cut to the keys `expected` names. */
function compared(op, result, expected) {
  if (op !== 'preflight' || !('ok' in result) || typeof expected.ok !== 'object' || expected.ok === null) return result;
  return { ok: Object.fromEntries(Object.keys(expected.ok).map((k) => [k, result.ok[k] ?? null])) };
}

// real.json holds the real-backend scenarios (real-conformance.test.js).
const files = readdirSync(scenarioDir).filter((f) => f.endsWith('.json') && f !== 'real.json').sort();
let count = 0;
for (const file of files) {
  for (const scenario of JSON.parse(readFileSync(join(scenarioDir, file), 'utf8'))) {
    count += 1;
    test(`${file.replace('.json', '')}: ${scenario.name}`, async () => {
      const root = realpathSync(mkdtempSync(join(tmpdir(), 'pidman-node-')));
      const sim = new SimBackend();
      arrange(sim, root, scenario.world);
      const start = sim.nowMs;
      const [result, members] = await outcome(sim, root, scenario.call);
      const expect = scenario.expect;
      assert.deepEqual(compared(scenario.call.op, result, expect.result), expect.result);
      if (expect.members) assert.deepEqual(members, expect.members);
      if (expect.signals) assert.deepEqual(sim.signals, expect.signals);
      if ('pid_file' in expect) {
        const path = join(root, '.bengal.pid');
        const isLink = existsSync(path) && lstatSync(path).isSymbolicLink();
        if (!isLink) assert.equal(existsSync(path) ? readFileSync(path, 'utf8') : null, expect.pid_file);
      }
      if (expect.elapsed_ms !== undefined) assert.equal(sim.nowMs - start, expect.elapsed_ms);
    });
  }
}

test('every scenario file is read', () => assert.ok(count >= 50, `${count} scenarios`));
