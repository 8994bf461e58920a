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
cargo test --workspace
