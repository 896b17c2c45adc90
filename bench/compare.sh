#!/usr/bin/env bash
# Side by side, in one run: pidman against Bengal's seed algorithms (Python +
# psutil + lsof), lsof and ss, on processes and sockets this script starts and
# stops itself (loopback only). Prints medians and ratios.
#
#   bench/compare.sh            # RUNS=30 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
SCALE=${SCALE:-500}

command -v hyperfine >/dev/null || { apt-get update -q && apt-get install -y -q hyperfine; }
command -v lsof >/dev/null || apt-get install -y -q lsof
command -v ss >/dev/null || apt-get install -y -q iproute2
python3 -c 'import psutil' 2>/dev/null || pip install -q psutil
cargo build --release -p pidman >&2

P=$PWD/target/release/pidman
SEED="python3 $PWD/bench/seed_pid_manager.py"
FIXTURE=$PWD/tests/fixtures/bengal
WORK=$(mktemp -d)
export PIDMAN_CACHE_DIR=$WORK/cache
STARTED=()
cleanup() {
  for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { until grep -q ready "$1" 2>/dev/null; do sleep 0.01; done; }
hf() { hyperfine -N -i --warmup 3 --runs "$RUNS" --style basic "$@" >&2; }

"$P" --root "$WORK" path >/dev/null   # compile the plugin into the cache once

# 1. A PID file holding a dead PID (prepared afresh before every run).
DEAD=$(sh -c 'echo $$')
echo "== check: PID file with a dead PID" >&2
hf --prepare "sh -c 'echo $DEAD > $WORK/.bengal.pid'" --export-json "$WORK/check.json" \
  -n pidman "$P --root $WORK check" \
  -n seed "$SEED check $WORK/.bengal.pid"

# 2. The owner of a listening port.
PORT=$(free_port)
"$FIXTURE" build --port "$PORT" >"$WORK/listener.out" & STARTED+=($!)
wait_ready "$WORK/listener.out"
port_bench() {
  hf --export-json "$1" \
    -n pidman "$P port $PORT" \
    -n ss "ss -ltnpH 'sport = :$PORT'" \
    -n lsof "lsof -nP -iTCP:$PORT -sTCP:LISTEN -t" \
    -n seed "$SEED port $PORT"
}
echo "== port owner" >&2
port_bench "$WORK/port.json"

# 3. The same with SCALE extra idle processes and SCALE extra listening sockets.
for _ in $(seq "$SCALE"); do sleep 600 & STARTED+=($!); done
python3 bench/many_listeners.py "$SCALE" >"$WORK/many.out" & STARTED+=($!)
wait_ready "$WORK/many.out"
echo "== port owner with $SCALE extra processes and $SCALE extra sockets" >&2
port_bench "$WORK/port-scale.json"
for pid in "${STARTED[@]:1}"; do kill "$pid" 2>/dev/null || true; done
STARTED=("${STARTED[0]}")

# 4. Noticing that a SIGTERMed server exited: a fresh server for every run.
echo "== kill: a server that exits on SIGTERM" >&2
PREP="sh -c '$FIXTURE serve >/dev/null 2>&1 & echo \$! > $WORK/victim; sleep 0.2'"
hyperfine -i --warmup 1 --runs "$(( RUNS < 15 ? RUNS : 15 ))" --style basic --prepare "$PREP" \
  --export-json "$WORK/kill.json" \
  -n pidman "$P kill \$(cat $WORK/victim)" \
  -n seed "$SEED kill \$(cat $WORK/victim)" >&2

# 5. A server that ignores SIGTERM: how long after the timeout it is dead.
echo "== kill --timeout 0.5: a server that ignores SIGTERM" >&2
PREP_IGN="sh -c '$FIXTURE serve --ignore-term >/dev/null 2>&1 & echo \$! > $WORK/victim; sleep 0.3'"
hyperfine -i --runs 5 --style basic --prepare "$PREP_IGN" --export-json "$WORK/killtimeout.json" \
  -n pidman "$P kill \$(cat $WORK/victim) --timeout 0.5" >&2

python3 bench/ratios.py "$WORK" "$SCALE" "$(wc -c < "$(ls target/release/build/pidman-*/out/pidman_guest.wasm | head -1)")"
