// Where the tests take pidman from: this source tree, or, with
// PIDMAN_NODE_INSTALLED=<project>, the copy `npm install <tarball>` put in
// that project (what a user gets).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const installed = process.env.PIDMAN_NODE_INSTALLED;
const base = installed
  ? pathToFileURL(join(installed, 'node_modules', 'pidman-wasm') + '/')
  : new URL('../', import.meta.url);

/** A module of the package under test. */
export const load = (file) => import(new URL(file, base).href);

/** The package's directory. */
export const packageDir = new URL('.', base).pathname;
