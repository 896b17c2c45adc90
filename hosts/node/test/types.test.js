// The .d.ts files against the code: test/types/api.ts uses every public
// API as a TypeScript user would, and `tsc --noEmit --strict` compiles it
// against the package under test (this tree, or the installed copy), with
// the Vite and Node types the package's own types refer to.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { load, packageDir } from './package.js';

const here = dirname(fileURLToPath(import.meta.url));
// The compiler and the Node types: this tree's devDependencies (`npm ci`).
const devModules = join(here, '..', 'node_modules');
const viteHome = process.env.PIDMAN_NODE_INSTALLED ?? join(here, '..');

test('the .d.ts files declare every public API, as the code has it (tsc --strict)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pidman-types-'));
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(packageDir, join(dir, 'node_modules', 'pidman-wasm'));
  symlinkSync(join(viteHome, 'node_modules', 'vite'), join(dir, 'node_modules', 'vite'));
  symlinkSync(join(devModules, '@types', 'node'), join(dir, 'node_modules', '@types', 'node'));
  copyFileSync(join(here, 'types', 'api.ts'), join(dir, 'api.ts'));
  writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n');
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: 'es2022', lib: ['es2022', 'esnext.disposable'],
      module: 'nodenext', moduleResolution: 'nodenext', types: ['node'], skipLibCheck: false,
    },
    files: ['api.ts'],
  }));
  const tsc = spawnSync(process.execPath, [join(devModules, 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, `tsc:\n${tsc.stdout}${tsc.stderr}`);
});

test('every value the code exports is declared, and nothing more', async () => {
  const dts = readFileSync(join(packageDir, 'index.d.ts'), 'utf8');
  const declared = [...dts.matchAll(/^export (?:class|function|const) (\w+)/gm)].map((m) => m[1]);
  const index = await load('index.js');
  assert.deepEqual(declared.sort(), Object.keys(index).sort());
  // PIDManager's static methods: all but `call` (the raw call, internal).
  const body = dts.slice(dts.indexOf('export class PIDManager'));
  const statics = [...body.slice(0, body.indexOf('\n}')).matchAll(/^ {2}static (\w+)/gm)].map((m) => m[1]);
  const code = Object.getOwnPropertyNames(index.PIDManager).filter((n) => typeof index.PIDManager[n] === 'function' && n !== 'call');
  assert.deepEqual(statics.sort(), code.sort());
});
