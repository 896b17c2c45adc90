#!/usr/bin/env bash
# Side by side, in one run, on processes and sockets this script starts and
# stops itself (loopback only): pidman against the real peers, started the
# way their users start them:
# - `/bin/true`: the floor, what starting any process costs here;
# - Bengal's own PID manager (bench/bengal_module.py: its module from the
#   pinned PyPI wheel, psutil installed), in a virtualenv of the machine's
#   real interpreter (never a shell shim such as pyenv's `python3`);
# - `ss -ltnp` with a port filter, and `lsof`, for the owner of a port.
# Then the in-process benchmark (`cargo bench`) and the installed binary.
# Prints each goal's ratio (issue 13) and the tables the README shows.
#
#   bench/compare.sh            # RUNS=40 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-40}
SCALE=${SCALE:-500}

need() { command -v "$1" >/dev/null || { apt-get update -q && apt-get install -y -q "$2"; }; }
need hyperfine hyperfine
need lsof lsof
need ss iproute2
cargo build --release -p pidman >&2

WORK=$(mktemp -d)
P=$PWD/target/release/pidman
FIXTURE=$PWD/tests/fixtures/bengal
export PIDMAN_CACHE_DIR=$WORK/cache
STARTED=()
cleanup() {
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Bengal's module, importable by the virtualenv's interpreter.
PYTHON=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
VENV=$PWD/target/bench-venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
"$PY" -m pip install -q psutil
"$PY" bench/bengal_module.py "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >&2
BENGAL="import sys; from pathlib import Path; from bengal_pid_manager import PIDManager as M"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { until grep -q ready "$1" 2>/dev/null; do sleep 0.01; done; }
hf() { hyperfine -N -i --warmup 5 --runs "$RUNS" --style basic "$@" >&2; }

"$P" --root "$WORK" path >/dev/null   # compile the plugin into the cache once

# 1. Starting a process, and a PID file holding a dead PID (prepared afresh
#    before every run).
DEAD=$(sh -c 'echo $$')
echo "== start, and check: PID file with a dead PID" >&2
hf --prepare "sh -c 'echo $DEAD > $WORK/.bengal.pid'" --export-json "$WORK/check.json" \
  -n true /bin/true \
  -n help "$P --help" \
  -n pidman "$P --root $WORK check" \
  -n bengal "$PY -c '$BENGAL; M.check_stale_pid(Path(sys.argv[1]))' $WORK/.bengal.pid"

# 2. The owner of a listening port.
PORT=$(free_port)
"$FIXTURE" build --port "$PORT" >"$WORK/listener.out" & STARTED+=($!)
wait_ready "$WORK/listener.out"
port_bench() {
  hf --export-json "$1" \
    -n pidman "$P port $PORT" \
    -n ss "ss -ltnpH 'sport = :$PORT'" \
    -n lsof "lsof -nP -iTCP:$PORT -sTCP:LISTEN -t" \
    -n bengal "$PY -c '$BENGAL; M.get_process_on_port($PORT)'"
}
echo "== port owner" >&2
port_bench "$WORK/port.json"

# 3. The same with SCALE extra idle processes and SCALE extra listening sockets.
for _ in $(seq "$SCALE"); do sleep 600 & STARTED+=($!); done
"$PY" bench/many_listeners.py "$SCALE" >"$WORK/many.out" & STARTED+=($!)
wait_ready "$WORK/many.out"
echo "== port owner with $SCALE extra processes and $SCALE extra sockets" >&2
port_bench "$WORK/port-scale.json"
# A server's tree at that scale: what a stop costs before its first signal
# (the snapshot and the tree), beside the port lookup, in one run.
sh -c "$FIXTURE serve >/dev/null; true" & TREE=$!; STARTED+=($TREE)
sleep 0.3
echo "== a server's tree with $SCALE extra processes (kill --dry-run)" >&2
hf --export-json "$WORK/tree-scale.json" \
  -n port "$P port $PORT" \
  -n tree "$P kill --dry-run $TREE"
for pid in "${STARTED[@]:1}"; do kill "$pid" 2>/dev/null || true; done
STARTED=("${STARTED[0]}")

# 4. Noticing that a SIGTERMed server exited: a fresh server for every run.
echo "== kill: a server that exits on SIGTERM" >&2
PREP="sh -c '$FIXTURE serve >/dev/null 2>&1 & echo \$! > $WORK/victim; sleep 0.2'"
hyperfine -i --warmup 1 --runs "$(( RUNS < 15 ? RUNS : 15 ))" --style basic --prepare "$PREP" \
  --export-json "$WORK/kill.json" \
  -n pidman "$P kill \$(cat $WORK/victim)" \
  -n bengal "$PY -c '$BENGAL; M.kill_stale_process(int(sys.argv[1]))' \$(cat $WORK/victim)" >&2

# 5. In process: the same check through the plugin and natively.
echo "== in process (cargo bench)" >&2
cargo bench -p pidman --bench plugin 2>/dev/null | tee "$WORK/divan.txt" >&2

# 6. The installed binary.
cargo install --quiet --locked --path host --root "$WORK/install" --target-dir target >&2

python3 bench/ratios.py "$WORK" "$SCALE" "$WORK/install/bin/pidman" \
  "$(ls target/release/build/pidman-*/out/pidman_guest.wasm | head -1)"
