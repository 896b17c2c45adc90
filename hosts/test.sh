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

python3 -m pip install -q --disable-pip-version-check "wasmtime==50.0.1" "pytest>=7" 2>&1 | grep -v -i "warning" || true
(cd hosts/python && python3 -m pytest -q)

command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
(cd hosts/node && npm ci --no-audit --no-fund --loglevel=error && npm test)
