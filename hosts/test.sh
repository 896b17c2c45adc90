#!/usr/bin/env bash
# The other-language hosts: build the plugin component, then run the Python
# (wasmtime-py) and Node (jco) hosts' tests, conformance scenarios included.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p pidman-guest --target wasm32-wasip2 --profile guest
export PIDMAN_WASM=$PWD/target/wasm32-wasip2/guest/pidman_guest.wasm
# The deliberately broken plugin, for each host's tests of its limits.
cargo build --release --target wasm32-wasip2 --manifest-path tests/plugins/broken/Cargo.toml \
  --target-dir target/broken-plugin
export PIDMAN_BROKEN_WASM=$PWD/target/broken-plugin/wasm32-wasip2/release/pidman_broken_plugin.wasm

# Python: the package installed into a fresh virtualenv (with the
# interpreter's real path, not a shim), its tests run against the installed
# copy from outside the source tree, with no PIDMAN_WASM.
python=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
venv=$PWD/target/python-venv
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "./hosts/python[test]"
(cd "$venv" && env -u PIDMAN_WASM PIDMAN_EXPECT_INSTALLED=1 \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/hosts/python/tests")

# Node: the source tree's tests, then the packed tarball installed into an
# empty project, its README example and the same tests against that copy.
command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
# fs-ext builds with node-gyp; with the network closed it needs local headers.
[ -f /usr/include/node/common.gypi ] && export npm_config_nodedir=/usr
export PIDMAN_BIN=$PWD/target/release/pidman
[ -x "$PIDMAN_BIN" ] || cargo build --release -p pidman
(cd hosts/node && npm ci --no-audit --no-fund --loglevel=error && npm test)
project=$PWD/target/node-project
rm -rf "$project" && mkdir -p "$project"
tarball=$(cd hosts/node && npm pack --pack-destination "$project" --loglevel=error | tail -n 1)
(cd "$project" && npm init -y >/dev/null \
  && npm install --no-audit --no-fund --loglevel=error "./$tarball" vite@8 \
  && sed -n '/^```js$/,/^```$/p' "$OLDPWD/hosts/node/README.md" | sed '1d;/^```$/,$d' > example.mjs \
  && env -u PIDMAN_WASM node example.mjs \
  && env -u PIDMAN_WASM PIDMAN_NODE_INSTALLED="$project" node --test "$OLDPWD"/hosts/node/test/*.test.js)
