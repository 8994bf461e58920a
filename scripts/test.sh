#!/usr/bin/env bash
# Meridian's full test command (also what CI runs via .ci/run):
# install the interop test dependencies, then format check, clippy with
# warnings denied, and every test of the workspace. The interop tests
# (tests/interop_*.rs, tests/harness_selfcheck.rs) need root for network
# namespaces; without root they print SKIP, unless CI is set, where they fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo's last line is a doc-test summary of one crate).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
