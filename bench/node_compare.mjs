// pidman's Node package side by side with Bengal's own PID manager and with
// the Rust host, per decision, in one run, on this machine (issue 20: the
// ratios, and how many times each decision crosses from the plugin into
// JavaScript).
//
// - pidman-wasm: `PIDManager` as its users call it (the plugin in the
//   package's worker thread: a message each way per call), and the same
//   decision through `Plugin` on this thread (no worker): the difference is
//   the worker's round trip.
// - Bengal's module (bench/bengal_module.py: its pid_manager.py from the
//   pinned PyPI wheel, psutil installed) cannot run in Node's process: it
//   is timed in process by a Python of the machine's real interpreter
//   (bench/bengal_warm.py), in the same run.
// - The Rust host cannot be called in process from Node either: its column
//   is the CLI, target/release/pidman, started afresh for every decision (a
//   process start each, timed like `/bin/true`), and, for the one decision
//   `cargo bench` measures, the number docs/speed.md records (not measured
//   here).
// - Crossings are counted in a separate pass, on a third `Plugin` whose
//   every import (pidman's and the WASI shim's, resource methods included)
//   is wrapped in a counter.
//
// From the package's directory, its dependencies installed:
//
//     cd hosts/node && node ../../bench/node_compare.mjs [PACKAGE_DIR]
//
// $PYTHON: the Python for Bengal's module and the fixture server (default
// target/python-venv/bin/python, a virtualenv of the real interpreter).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const pkg = resolve(process.argv[2] ?? join(root, 'hosts', 'node'));
const RUST_CLI = join(root, 'target', 'release', 'pidman');
const FIXTURE = join(root, 'tests', 'fixtures', 'bengal');
const PYTHON = process.env.PYTHON ?? join(root, 'target', 'python-venv', 'bin', 'python');
// docs/speed.md, `cargo bench -p pidman --bench plugin` in bench/compare.sh's
// last recorded run: a warm check of a live server's file, in process.
const RUST_IN_PROCESS_US = { checkLive: [46.3, 35.6] };
const QUICK = process.env.BENCH_QUICK ? 10 : 1; // a smoke test of the script

const { PIDManager } = await import(pathToFileURL(join(pkg, 'index.js')).href);
const { Plugin } = await import(pathToFileURL(join(pkg, 'pidman.js')).href);
const { LinuxBackend } = await import(pathToFileURL(join(pkg, 'linux.js')).href);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => process.hrtime.bigint();
const work = mkdtempSync(join(tmpdir(), 'pidman-node-bench-'));
const project = join(work, 'project');
spawnSync('mkdir', [project]);
const pidFile = join(project, '.bengal.pid');
const deadPid = () => spawnSync('true').pid;
const env = { ...process.env, PIDMAN_CACHE_DIR: join(work, 'cache') };

/** Median ms of starting argv and waiting for it, `prepare` untimed before each. */
function spawnMs(argv, rounds, prepare, opts = {}) {
  const times = [];
  for (let i = 0; i < rounds; i += 1) {
    prepare?.();
    const t = now();
    spawnSync(argv[0], argv.slice(1), { stdio: 'ignore', env, ...opts });
    times.push(Number(now() - t) / 1e6);
  }
  return median(times);
}

/** Median us of one awaited call, `prepare` untimed before each. */
async function warmUs(call, rounds, expect, prepare) {
  const times = [];
  for (let i = 0; i < rounds; i += 1) {
    prepare?.();
    const t = now();
    const found = await call();
    times.push(Number(now() - t) / 1e3);
    if (!expect(found)) throw new Error(`unexpected ${JSON.stringify(found, (k, v) => (typeof v === 'bigint' ? `${v}` : v))}`);
  }
  return median(times);
}

function listenerPort(pid) {
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('socket:[')) inodes.add(target.slice(8, -1));
    } catch { /* gone */ }
  }
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9])) return parseInt(f[1].split(':').pop(), 16);
    }
  }
  throw new Error(`${pid} listens on no TCP port`);
}

function started(args) {
  const child = spawn(PYTHON, [FIXTURE, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((r) => child.stdout.once('data', () => r(child)));
}

// 1. A fresh node process: import, then the first check of a dead PID.
const rewriteDead = () => writeFileSync(pidFile, String(deadPid()));
const coldScript = `const { PIDManager } = await import(${JSON.stringify(pathToFileURL(join(pkg, 'index.js')).href)}); await PIDManager.checkStalePid(process.argv[1]);`;
const nodeFloor = spawnMs([process.execPath, '-e', '0'], 30 / (QUICK > 1 ? 10 : 1));
const nodeCold = spawnMs([process.execPath, '--input-type=module', '-e', coldScript, pidFile], 30 / (QUICK > 1 ? 10 : 1), rewriteDead);
spawnSync(RUST_CLI, ['--root', project, 'path'], { env, stdio: 'ignore' }); // compiled plugin cached
const trueFloor = spawnMs(['/bin/true'], 60 / QUICK);
const rustColdDead = spawnMs([RUST_CLI, '--root', project, 'check'], 60 / QUICK, rewriteDead);

const server = await started(['serve']);
const listener = await started(['serve', '--port', '0']);
const other = spawn('sleep', ['600']);
const live = server.pid;
const port = listenerPort(listener.pid);
const dead = deadPid();
const writeLive = () => writeFileSync(pidFile, String(live));
const writeDead = () => writeFileSync(pidFile, String(dead));
const rows = [];
let crossings;
let bengal;
try {
  // Bengal's module, in process in Python.
  spawnSync(PYTHON, [join(here, 'bengal_module.py'), work], { stdio: ['ignore', 'ignore', 'inherit'] });
  const b = spawnSync(PYTHON, [join(here, 'bengal_warm.py'), work, pidFile, live, other.pid, port, listener.pid, dead].map(String), { encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`bengal_warm.py: ${b.stderr}`);
  bengal = JSON.parse(b.stdout);

  const direct = await Plugin.load({ gen: join(pkg, 'gen') });
  const [grant] = [realpathOf(project)];
  const cwd = realpathOf(process.cwd());
  const gone = (f) => f === null && !existsSync(pidFile);
  const decisions = [
    // key, label, worker call, direct call (grant, export, args), expect, prepare, rounds, rust args
    ['checkLive', 'checkStalePid, live Bengal server', () => PIDManager.checkStalePid(pidFile),
      [grant, 'checkStalePid', [pidFile]], (f) => f === live, writeLive, 2000, ['--root', project, 'check']],
    ['checkDead', 'checkStalePid, dead PID (file removed)', () => PIDManager.checkStalePid(pidFile),
      [grant, 'checkStalePid', [pidFile]], gone, writeDead, 600, ['--root', project, 'check']],
    ['isBengalLive', 'isBengalProcess, live Bengal server', () => PIDManager.isBengalProcess(live),
      [cwd, 'isBengalProcess', [live]], (f) => f === true, null, 2000, ['is-bengal', String(live)]],
    ['isBengalOther', 'isBengalProcess, another program (sleep)', () => PIDManager.isBengalProcess(other.pid),
      [cwd, 'isBengalProcess', [other.pid]], (f) => f === false, null, 2000, ['is-bengal', String(other.pid)]],
    ['port', 'getProcessOnPort, one listener', () => PIDManager.getProcessOnPort(port),
      [cwd, 'getProcessOnPort', [port]], (f) => f === listener.pid, null, 300, ['port', String(port)]],
  ];
  for (const [key, label, viaWorker, [g, exp, args], expect, prepare, rounds, rustArgs] of decisions) {
    const prep = prepare ?? writeLive;
    const directCall = async () => {
      const v = await direct.call(new LinuxBackend(), g, exp, ...args);
      return exp === 'checkStalePid' ? (v ?? null) : exp === 'getProcessOnPort' ? (v.tag === 'listener' || v.tag === 'holder' ? v.val : null) : v;
    };
    prep();
    await viaWorker();
    prep();
    await directCall(); // each one's instance made, untimed
    prep();
    const worker = await warmUs(viaWorker, rounds / QUICK, expect, prepare);
    prep();
    const inThread = await warmUs(directCall, rounds / QUICK, expect, prepare);
    prep();
    const rust = spawnMs([RUST_CLI, ...rustArgs], 60 / QUICK, prepare);
    rows.push({ key, label, worker, inThread, rust, bengal: bengal[key] });
  }

  // 2. The crossings of each decision, on a plugin whose imports count.
  const counts = new Map();
  const bump = (name) => counts.set(name, (counts.get(name) ?? 0) + 1);
  const wrapped = new WeakSet();
  const wrapClass = (iface, cls) => {
    if (wrapped.has(cls)) return;
    wrapped.add(cls);
    const proto = cls.prototype;
    for (const key of [...Object.getOwnPropertyNames(proto), ...Object.getOwnPropertySymbols(proto)]) {
      if (key === 'constructor') continue;
      const d = Object.getOwnPropertyDescriptor(proto, key);
      if (typeof d.value !== 'function') continue;
      const name = `${iface}.${cls.name}.${typeof key === 'symbol' ? key.description : key}`;
      const original = d.value;
      Object.defineProperty(proto, key, { ...d, value: function counted(...a) { bump(name); return original.apply(this, a); } });
    }
  };
  const isClass = (v) => typeof v === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(v));
  const countingInstantiate = (getCoreModule, imports) => {
    const out = {};
    for (const [ifaceKey, iface] of Object.entries(imports)) {
      const short = ifaceKey.replace(/^[^/]*\//, '').replace(/@.*$/, '');
      out[ifaceKey] = {};
      for (const [name, v] of Object.entries(iface)) {
        if (isClass(v)) { wrapClass(short, v); out[ifaceKey][name] = v; }
        else if (typeof v === 'function') out[ifaceKey][name] = (...a) => { bump(`${short}.${name}`); return v(...a); };
        else out[ifaceKey][name] = v;
      }
    }
    return direct.instantiate(getCoreModule, out);
  };
  const counting = new Plugin(countingInstantiate, direct.getCoreModule);
  const backendCounts = new Map();
  const countingBackend = () => new Proxy(new LinuxBackend(), {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop === 'symbol') return v;
      return (...a) => { backendCounts.set(prop, (backendCounts.get(prop) ?? 0) + 1); return v.apply(target, a); };
    },
  });
  crossings = [];
  for (const [key, label, , [g, exp, args], , prepare] of decisions) {
    const prep = prepare ?? writeLive;
    prep();
    await counting.call(countingBackend(), g, exp, ...args);
    counts.clear();
    backendCounts.clear();
    const n = 200 / QUICK;
    for (let i = 0; i < n; i += 1) {
      prep();
      await counting.call(countingBackend(), g, exp, ...args);
    }
    const per = (m) => [...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, v / n]);
    crossings.push({ key, label, imports: per(counts), backend: per(backendCounts) });
  }
} finally {
  for (const p of [server, listener, other]) p.kill('SIGKILL');
}

const fmt = (us) => (us >= 10000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} us`);
const x = (a, b) => `${(a / b).toFixed(2)}x`;
const python = spawnSync(PYTHON, ['-c', 'import os,sys;print(os.path.realpath(sys.executable), sys.version.split()[0])'], { encoding: 'utf8' }).stdout.trim();
console.log(`machine: ${process.arch}, Linux ${release()}, ${cpus().length} cores; ${new Date().toISOString().slice(0, 10)}`);
console.log(`node ${process.version}; package ${pkg}; Bengal's module under ${python} (+ psutil)`);
console.log('');
console.log("| decision | Bengal's module (Python, in process) | pidman-wasm (worker) | pidman-wasm, Plugin on this thread | worker round trip | pidman-wasm / Bengal | Rust CLI, a process start each | pidman-wasm / Rust CLI | Rust in process (docs/speed.md) |");
console.log('|---|---|---|---|---|---|---|---|---|');
console.log(`| fresh node process: import + first checkStalePid (dead PID) | | ${nodeCold.toFixed(1)} ms (node -e 0: ${nodeFloor.toFixed(1)} ms) | | | | ${rustColdDead.toFixed(2)} ms | ${(nodeCold / rustColdDead).toFixed(1)}x | |`);
for (const r of rows) {
  const ip = RUST_IN_PROCESS_US[r.key];
  const ipText = ip ? `${ip[0]} us plugin, ${ip[1]} us native (${(r.worker / ip[0]).toFixed(0)}x)` : '';
  console.log(`| warm ${r.label} | ${fmt(r.bengal)} | ${fmt(r.worker)} | ${fmt(r.inThread)} | ${fmt(r.worker - r.inThread)} | ${x(r.worker, r.bengal)} | ${r.rust.toFixed(2)} ms | ${x(r.worker / 1000, r.rust)} | ${ipText} |`);
}
console.log(`\nfloor, timed the same way: /bin/true ${trueFloor.toFixed(2)} ms`);
console.log('\n| decision (warm) | crossings into JS | pidman imports | WASI imports | backend calls |');
console.log('|---|---|---|---|---|');
for (const c of crossings) {
  const total = c.imports.reduce((s, [, v]) => s + v, 0);
  const ours = c.imports.filter(([k]) => !k.startsWith('wasi') && /^(process-table|signals|ports|files|log)\./.test(k));
  const wasi = c.imports.filter((e) => !ours.includes(e));
  const list = (es) => es.map(([k, v]) => `${k} ${+v.toFixed(2)}`).join(', ');
  const sum = (es) => +es.reduce((s, [, v]) => s + v, 0).toFixed(2);
  console.log(`| ${c.label} | ${+total.toFixed(2)} | ${sum(ours)}: ${list(ours)} | ${sum(wasi)}: ${list(wasi)} | ${list(c.backend)} |`);
}

function realpathOf(p) {
  return spawnSync('realpath', [p], { encoding: 'utf8' }).stdout.trim();
}
