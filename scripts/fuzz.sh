#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a bounded time each; fail if any crashes.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 20 (CI passes a smaller budget); TARGET
# defaults to every target (`cargo fuzz list`). Each target starts from its
# committed seeds (fuzz/seeds/<target>/, regression inputs included) plus
# whatever a previous run of this script left in fuzz/corpus/<target>/ (not
# committed). A crash leaves its input in fuzz/artifacts/<target>/ and makes
# the script exit 1 after the remaining targets ran; reproduce it with
#   cargo fuzz run -O -a -s none TARGET fuzz/artifacts/TARGET/crash-…
#
# Toolchain: the machine's stable Rust, no nightly. cargo-fuzz drives
# libFuzzer (C++, built by the libfuzzer-sys crate) with coverage
# instrumentation through stable `-C` flags; what needs nightly is only the
# sanitizers (`-Zsanitizer`), and Meridian's fuzzed code is `forbid(unsafe)`,
# so we build with `--sanitizer none` and `--debug-assertions` (overflow and
# debug_assert! panics count as crashes). For AddressSanitizer anyway:
# FUZZ_SANITIZER=address, which sets RUSTC_BOOTSTRAP=1 (stable ships the ASan
# runtime). cargo-fuzz itself is installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-20}"
shift || true
sanitizer="${FUZZ_SANITIZER:-none}"
if [[ "$sanitizer" != none ]]; then
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

flags=(-O -a -s "$sanitizer")
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets (stable, sanitizer: $sanitizer)"
cargo fuzz build "${flags[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    log="fuzz/artifacts/$t/last-run.log"
    echo "== $t: ${seconds}s"
    # -timeout: one input taking > 10 s is a hang; -rss_limit_mb: runaway memory.
    if cargo fuzz run "${flags[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    elif grep -q "failed to build fuzz script" "$log"; then
        # The crates changed under a running campaign, or a target no longer
        # compiles against them.
        status=BUILD
        failed+=("$t")
        grep -E "^error" -A6 "$log" | head -20 || true
    else
        status=CRASH
        failed+=("$t")
        grep -E "panicked|ERROR|SUMMARY|Test unit written|assert" "$log" | head -20 || true
    fi
    runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" | tail -1 || true)
    cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+" "$log" | tail -1 || true)
    line=$(printf "%-16s %-6s runs=%-10s %s corpus=%s" "$t" "$status" "${runs:-?}" "${cov:-}" \
        "$(find "$corpus" -type f | wc -l)")
    summary+=("$line")
    echo "$line"
done

echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]} (logs and crashing inputs in fuzz/artifacts/)"
    echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, none crashed"
