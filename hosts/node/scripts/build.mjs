// Transpile the plugin component for Node (`npm run build`, run by
// `prepack`): $PIDMAN_WASM, else the guest built by cargo in this repository.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const repo = join(here, '..', '..');
let wasm = process.env.PIDMAN_WASM;
if (!wasm) {
  execFileSync('cargo', ['build', '-p', 'pidman-guest', '--target', 'wasm32-wasip2', '--profile', 'guest'],
    { cwd: repo, stdio: 'inherit' });
  wasm = join(repo, 'target', 'wasm32-wasip2', 'guest', 'pidman_guest.wasm');
}
if (!existsSync(wasm)) throw new Error(`pidman: no plugin at ${wasm}`);
execFileSync(join(here, 'node_modules', '.bin', 'jco'), [
  'transpile', wasm, '-o', join(here, 'gen'), '--instantiation', 'async', '--name', 'pidman'],
{ stdio: 'inherit' });
