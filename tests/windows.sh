#!/usr/bin/env bash
# The Windows build, run: under Wine, the host's unit tests, then pidman.exe
# against real Windows processes (tests/fixtures/winserver: a `bengal.exe
# serve` that listens), with project roots and PID files written as Windows
# users write them (drive, verbatim, relative; either slash; spaces and
# non-ASCII names), trees, `run`'s Job Object and a console Ctrl-C (sent by
# tests/fixtures/winserver's consolectl.exe). Each row prints `ok` or
# `FAIL`; any FAIL fails the run.
#
# Wine 8 (Debian's) lacks bcryptprimitives.dll, which Rust's std imports;
# scripts/wine/bcryptprimitives.c is a stand-in, built here with MinGW and
# put next to each .exe. What Wine cannot show, and so is not checked here:
# a socket's owning PID (Wine lists every socket with PID 0: a port's owner
# reads as unknown), a console event sent from outside Wine or a console
# closing, and a Windows parent of a program started from Linux (`acquire`
# there needs `--pid`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

target=x86_64-pc-windows-gnu
command -v x86_64-w64-mingw32-gcc >/dev/null || {
  apt-get update -q && apt-get install -y -q --no-install-recommends gcc-mingw-w64-x86-64-posix
}
[ -x /usr/lib/wine/wine64 ] || { apt-get update -q && apt-get install -y -q wine64; }
rustup target add "$target" >/dev/null

export WINEPREFIX=$repo/target/wineprefix WINEDEBUG=-all
wine=/usr/lib/wine/wine64
dll=$repo/target/$target/bcryptprimitives.dll
mkdir -p "$(dirname "$dll")"
x86_64-w64-mingw32-gcc -shared -O2 -o "$dll" scripts/wine/bcryptprimitives.c \
  scripts/wine/bcryptprimitives.def -ladvapi32

# The host's unit tests, under Wine (cargo runs each test binary there).
cargo test -p pidman --lib --target "$target" --no-run
cp "$dll" "target/$target/debug/deps/"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$wine cargo test -p pidman --lib --target "$target"

# The binaries, side by side with the DLL; pidman with its test-only pause
# points (`test-pause`: inert unless PIDMAN_TEST_PAUSE names one).
cargo build -p pidman --target "$target" --features test-pause
cargo build --manifest-path tests/fixtures/winserver/Cargo.toml --target "$target" \
  --target-dir target/winserver
work=$(mktemp -d)
started=()
cleanup() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Whatever a failing row left running in this suite's own Wine prefix.
  /usr/lib/wine/wineserver64 -k 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/proj" "$work/with space é"
cp "target/$target/debug/pidman.exe" "target/winserver/$target/debug/bengal.exe" \
  "target/winserver/$target/debug/consolectl.exe" "$dll" "$work/bin/"
cd "$work"
# The Windows spelling of this directory, as Wine maps it (drive Z: is /).
win=$(printf 'Z:%s' "$work" | tr / '\\')

failed=0
row() { # description, expected status, command...
  local what=$1 want=$2
  shift 2
  set +e
  out=$("$@" 2>err)
  got=$?
  set -e
  if [ "$got" = "$want" ]; then
    echo "ok   $what"
  else
    echo "FAIL $what: exit $got, expected $want; stdout: $out; stderr: $(cat err)"
    failed=1
  fi
}
check_out() { # description, expected stdout
  if [ "$out" = "$2" ]; then echo "ok   $1"; else echo "FAIL $1: printed '$out', expected '$2'"; failed=1; fi
}
pidman() { "$wine" bin/pidman.exe "$@"; }
# Start `bengal.exe ARGS` under Wine; sets $server (its Windows PID).
start() {
  "$wine" bin/bengal.exe "$@" > "serve.$$.out" &
  started+=($!)
  for _ in $(seq 1 200); do
    [ -s "serve.$$.out" ] && break
    sleep 0.05
  done
  read -r _ server < "serve.$$.out"
  rm -f "serve.$$.out"
}
serve() { start serve "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== paths"
for root in proj "$win\\proj" "${win//\\//}/proj" "\\\\?\\$win\\proj" "$win\\with space é"; do
  row "path --root $root" 0 pidman --root "$root" path
done
row "path names the file the Windows way" 0 pidman --root "$win/proj" path
check_out "  ... as $win\\proj\\.bengal.pid" "$win\\proj\\.bengal.pid"
for file in "proj\\sub dir\\é.pid" "$win\\proj\\b.pid" "$win/proj/c.pid" "\\\\?\\$win\\proj\\d.pid"; do
  row "write --pid-file $file (a directory made as needed)" 0 pidman write --pid-file "$file" --pid 4
  row "  check: PID 4 is no server, removed" 1 pidman check --pid-file "$file"
done
[ ! -e "proj/sub dir/é.pid" ] && [ -d "proj/sub dir" ] && echo "ok   files made and removed where named" \
  || { echo "FAIL proj/sub dir/é.pid"; failed=1; }

echo "== a Bengal server (bengal.exe serve)"
# A live program that is not a Bengal server: claims for it are released by
# `remove` (a Bengal server's file is kept).
start idle
claimant=$server
port=$(free_port)
serve --port "$port"
row "is-bengal $server (bengal.exe serve)" 0 pidman is-bengal "$server"
row "is-bengal $((server + 1)) (the low bits of a PID name no process)" 1 pidman is-bengal "$((server + 1))"
row "write its PID in 'with space é'" 0 pidman --root "$win\\with space é" write --pid "$server"
row "check keeps a live bengal.exe server's file" 0 pidman --root "with space é" check
check_out "  ... and names it" "$server"
printf '%s\n' "$((server + 1))" > proj/.bengal.pid
row "check of PID+1 (aliases the server's handle): stale, removed" 1 pidman --root proj check
[ ! -e proj/.bengal.pid ] && echo "ok   ... removed" || { echo "FAIL PID+1 file kept"; failed=1; }
row "port $port: in use (Wine shows no owner: unknown)" 0 pidman port "$port"
row "preflight --port $port: Wine hides the port's owner, so it is not the server's" 1 \
  pidman --root "with space é" preflight --yes --port "$port"
row "acquire for another program while the server lives: held" 1 \
  pidman --root "with space é" acquire --pid "$claimant"
row "remove a live server's file: refused" 1 pidman --root "with space é" remove
row "preflight --yes stops it" 0 pidman --root "$win\\with space é" preflight --yes
row "  ... it is gone" 1 pidman is-bengal "$server"
row "  ... and the port is free" 1 pidman port "$port"

echo "== kill"
serve
row "kill $server" 0 pidman --json kill "$server"
case $out in *'"outcome":"terminated"'*) echo "ok   ... terminated";; *) echo "FAIL kill: $out"; failed=1;; esac
row "  ... gone" 1 pidman is-bengal "$server"

echo "== claims"
for round in $(seq 1 20); do
  row "acquire for $claimant, round $round" 0 pidman --root proj acquire --pid "$claimant"
  row "remove, round $round" 0 pidman --root proj remove
done > claims.out
grep -v '^ok' claims.out && failed=1 || echo "ok   20 claims released and taken again at once, never busy"

echo "== run"
row "run -- bengal.exe serve --exit: its status, the file removed" 0 \
  pidman --root proj run -- "$win\\bin\\bengal.exe" serve --exit
[ ! -e proj/.bengal.pid ] && echo "ok   ... removed" || { echo "FAIL run left its file"; failed=1; }
row "run of a missing program: an error, no file" 2 pidman --root proj run -- "$win\\bin\\nothing.exe"
[ ! -e proj/.bengal.pid ] && echo "ok   ... no file" || { echo "FAIL run left a file"; failed=1; }

echo "== run -- npm: a .cmd found through PATH and PATHEXT"
mkdir -p tools
printf '@"%s\\bin\\bengal.exe" serve --exit\r\n' "$win" > tools/npm.cmd
export WINEPATH="$win\\tools"
row "run -- npm run dev (npm.cmd on PATH): its status, the file removed" 0 \
  pidman --root proj run -- npm run dev
unset WINEPATH
[ ! -e proj/.bengal.pid ] && echo "ok   ... removed" || { echo "FAIL run left its file"; failed=1; }

echo "== run holds its server's tree in a job that ends with it"
# Wine's sockets are the host's: a port the tree holds cannot be bound here.
port_free_within() { # port, seconds
  python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while True:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
        sys.exit(0)
    except OSError:
        if time.monotonic() > until:
            sys.exit(1)
        time.sleep(0.1)
PY
}
port_held_within() { # port, seconds
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do port_free_within "$1" 0 || return 0; sleep 0.1; done
  return 1
}
port=$(free_port)
# Output to a file: a child that outlived run would hold a pipe open.
set +e
"$wine" bin/pidman.exe --root proj run -- "$win\\bin\\bengal.exe" serve --exit \
  --spawn "$win\\bin\\bengal.exe" serve --port "$port" > run.out 2>&1
got=$?
set -e
[ "$got" = 0 ] && echo "ok   run -- a server that starts a listening child, then exits: 0" \
  || { echo "FAIL run of a server with a child: exit $got: $(cat run.out)"; failed=1; }
# Only the child prints `ready` (once it listens): it did, before run ended.
grep -q '^ready' run.out && echo "ok   ... the child listened before run ended" \
  || { echo "FAIL the child never listened: $(cat run.out)"; failed=1; }
port_free_within "$port" 10 && echo "ok   ... its child ended with run: the port is free" \
  || { echo "FAIL the server's child outlived run and holds $port"; failed=1; }
port=$(free_port)
"$wine" bin/pidman.exe --root proj run -- "$win\\bin\\bengal.exe" serve --spawn "$win\\bin\\bengal.exe" serve --port "$port" > run.out 2>&1 &
run_pid=$!
started+=("$run_pid")
if port_held_within "$port" 20; then
  echo "ok   run's server's child listens on $port"
  kill -KILL "$run_pid"
  wait "$run_pid" 2>/dev/null || true
  port_free_within "$port" 10 && echo "ok   run SIGKILLed: the server and its child ended with it, the port is free" \
    || { echo "FAIL run SIGKILLed: the server's tree outlived it and holds $port"; failed=1; }
else
  echo "FAIL the server's child never listened on $port: $(cat run.out)"; failed=1
fi

echo "== a tree: a server whose child serves (parents from the process snapshot)"
port=$(free_port)
start serve --spawn "$win\\bin\\bengal.exe" serve --port "$port"
parent=$server
if port_held_within "$port" 20; then
  row "kill --dry-run $parent" 0 pidman kill --dry-run "$parent"
  case $out in "would stop 2 processes"*) echo "ok   ... names the server and its child";;
    *) echo "FAIL kill --dry-run: $out"; failed=1;; esac
  port_held_within "$port" 1 && echo "ok   ... and stops nothing" || { echo "FAIL dry run freed $port"; failed=1; }
  row "kill $parent stops its tree" 0 pidman kill "$parent"
  port_free_within "$port" 10 && echo "ok   ... the child too: the port is free" \
    || { echo "FAIL kill left the child holding $port"; failed=1; }
else
  echo "FAIL the server's child never listened on $port"; failed=1
fi

echo "== Ctrl-C at run's console"
# consolectl.exe: a console of its own, shared with run and its server,
# and Ctrl-C sent to all of it once the server listens.
port=$(free_port)
set +e
"$wine" bin/consolectl.exe "$port" "$win\\bin\\pidman.exe" --root "$win\\proj" run -- \
  "$win\\bin\\bengal.exe" serve --port "$port" > ctrl.out 2>&1
got=$?
set -e
# The server's status: 130 on Windows (STATUS_CONTROL_C_EXIT); Wine's
# default Ctrl-C handler exits 0.
case $got in 0|130) echo "ok   Ctrl-C: the server ended and run with it (exit $got)";;
  *) echo "FAIL Ctrl-C at the console: exit $got: $(cat ctrl.out)"; failed=1;; esac
grep -q 'ctrl-c sent' ctrl.out && echo "ok   ... sent once the server listened" \
  || { echo "FAIL no Ctrl-C was sent: $(cat ctrl.out)"; failed=1; }
[ ! -e proj/.bengal.pid ] && echo "ok   ... run removed its file" || { echo "FAIL run left its file"; failed=1; }
port_free_within "$port" 10 && echo "ok   ... and the port is free" || { echo "FAIL $port still held"; failed=1; }

echo "== Ctrl-C before run's server joins the console"
# run pauses with the server created but suspended (not yet on the
# console's list of processes); consolectl sends Ctrl-C then and lets it go
# on. The console never gives that event to the server: run must end it.
port=$(free_port)
set +e
PIDMAN_TEST_PAUSE="resuming the server=$win\\release.$port" "$wine" bin/consolectl.exe paused \
  "$win\\bin\\pidman.exe" --root "$win\\proj" run -- "$win\\bin\\bengal.exe" serve --port "$port" \
  > instant.out 2>&1
got=$?
set -e
[ "$got" = 130 ] && echo "ok   run ends 130 (CTRL_C_EVENT), having ended the server" \
  || { echo "FAIL Ctrl-C before the server: exit $got: $(cat instant.out)"; failed=1; }
grep -q 'before the server started: not started' instant.out && echo "ok   ... saying it was not started" \
  || { echo "FAIL no 'not started': $(cat instant.out)"; failed=1; }
sleep 1
port_free_within "$port" 0 && echo "ok   ... which never listened" || { echo "FAIL the server ran and holds $port"; failed=1; }
[ ! -e proj/.bengal.pid ] && echo "ok   ... and no file is left" || { echo "FAIL run left its file"; failed=1; }

echo "== the caller's parent"
# A server that runs pidman itself: acquire with no --pid claims for it.
rm -f proj/.bengal.pid
start serve --spawn "$win\\bin\\pidman.exe" --root "$win\\proj" acquire
for _ in $(seq 1 100); do [ -s proj/.bengal.pid ] && break; sleep 0.1; done
if [ "$(tr -dc 0-9 < proj/.bengal.pid 2>/dev/null)" = "$server" ]; then
  echo "ok   acquire without --pid, run by the server $server: claimed for it"
else
  echo "FAIL acquire without --pid named '$(cat proj/.bengal.pid 2>/dev/null)', not its parent $server"; failed=1
fi
row "  ... which kill stops" 0 pidman kill "$server"
# Started from Linux, pidman.exe has no Windows parent that runs.
row "acquire with no parent to name: an error that says so" 2 pidman --root proj acquire
grep -q 'give --pid' err && echo "ok   ... naming --pid" || { echo "FAIL no --pid hint: $(cat err)"; failed=1; }

exit "$failed"
