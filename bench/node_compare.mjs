// pidman's Node package, timed in one run (issue 11's goals): a fresh
// `node` process importing the package and running its first check (a dead
// PID), and a warm checkStalePid of a live server's file in process. Run it
// from a project where the packed tarball is installed (hosts/test.sh makes
// target/node-project):
//
//     node bench/node_compare.mjs target/node-project
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const project = resolve(process.argv[2] ?? 'target/node-project');
const here = dirname(fileURLToPath(import.meta.url));
const { PIDManager } = await import(pathToFileURL(join(project, 'node_modules', 'pidman-wasm', 'index.js')).href);
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const dir = mkdtempSync(join(tmpdir(), 'pidman-node-bench-'));
const pidFile = join(dir, '.bengal.pid');
const deadPid = () => spawnSync('true').pid;

const cold = [];
const script = `import { PIDManager } from 'pidman-wasm'; await PIDManager.checkStalePid(process.argv[1]);`;
const floor = [];
for (let i = 0; i < 30; i += 1) {
  writeFileSync(pidFile, String(deadPid()));
  let t = process.hrtime.bigint();
  spawnSync(process.execPath, ['--input-type=module', '-e', script, pidFile], { cwd: project });
  cold.push(Number(process.hrtime.bigint() - t) / 1e6);
  t = process.hrtime.bigint();
  spawnSync(process.execPath, ['-e', '0']);
  floor.push(Number(process.hrtime.bigint() - t) / 1e6);
}

const server = spawn(process.execPath === 'node' ? 'python3' : 'python3', [join(here, '..', 'tests', 'fixtures', 'bengal'), 'serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((r) => server.stdout.once('data', r));
writeFileSync(pidFile, String(server.pid));
await PIDManager.checkStalePid(pidFile);
const warm = [];
for (let i = 0; i < 3000; i += 1) {
  const t = process.hrtime.bigint();
  const found = await PIDManager.checkStalePid(pidFile);
  warm.push(Number(process.hrtime.bigint() - t) / 1e3);
  if (found !== server.pid) throw new Error(`found ${found}`);
}
server.kill();

console.log(`node ${process.version}`);
console.log('| work | pidman-wasm | goal |');
console.log('|---|---|---|');
console.log(`| fresh node process: import + first checkStalePid (dead PID) | ${median(cold).toFixed(1)} ms (node -e 0: ${median(floor).toFixed(1)} ms) | < 60 ms |`);
console.log(`| warm checkStalePid, live server, same process | ${median(warm).toFixed(0)} us | < 100 us |`);
