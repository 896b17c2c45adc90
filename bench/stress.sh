#!/usr/bin/env bash
# The long safety variants: 100 rounds of 32 racing `acquire`s, 1000 writers
# SIGKILLed at random points, a million generated PID files through the
# parser and the check decision. CI runs this after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p pidman --test tests -- --ignored --nocapture stress
cargo test --release -p pidman-guest -- --ignored --nocapture a_million_contents
