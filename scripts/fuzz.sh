#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for a bounded time and prints, per target, the executions, the
# time and the crashes found. Usage: scripts/fuzz.sh [seconds per target, default 60] [target…]
#
# With a nightly toolchain (`rustup toolchain list`) it uses cargo-fuzz (libFuzzer, installed
# from crates.io when missing). Without one, it tries cargo-fuzz on stable with RUSTC_BOOTSTRAP
# and no sanitizer; when that cannot build either, it runs the deterministic mutation loop
# (fuzz/tests/mutation_loop.rs) for the same time. Crashers are kept in fuzz/artifacts/<target>/;
# turn each one into a test in topologies/src/decode/tests_fuzz_regressions.rs.
# Exit status: 0 when no target crashed, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fuzz_dir="$here/../fuzz"
cd "$fuzz_dir"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(decode_input decode_state apply_input)
fi
# The fuzz crate shares no build with the workspace (it targets an explicit triple with
# coverage flags), so it builds in its own dir rather than wait on the workspace's build lock.
export CARGO_TARGET_DIR="${TALLY_FUZZ_TARGET_DIR:-$HOME/.cache/tally-fuzz-target}"

mode=""
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    mode=libfuzzer
    toolchain=(+nightly)
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked >&2 || echo "fuzz.sh: cargo-fuzz could not be installed" >&2
fi
fuzz_flags=(-O)
if [ -z "$mode" ] && command -v cargo-fuzz >/dev/null 2>&1; then
    # Stable rustc accepts the -Z flags libFuzzer needs only with RUSTC_BOOTSTRAP.
    if RUSTC_BOOTSTRAP=1 cargo fuzz build -O --sanitizer none "${targets[0]}" >&2; then
        mode=libfuzzer
        export RUSTC_BOOTSTRAP=1
        fuzz_flags=(-O --sanitizer none)
    fi
fi
[ -n "$mode" ] || mode=loop
echo "fuzz.sh: mode $mode, $seconds s per target: ${targets[*]}" >&2

status=0
summary=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    crashes_before=$(find "artifacts/$target" -type f | wc -l)
    log="$(mktemp -t "fuzz-$target-XXXX.log")"
    start=$(date +%s)
    if [ "$mode" = libfuzzer ]; then
        # -timeout: one input taking over 10 s is a hang and counts as a crash.
        cargo "${toolchain[@]}" fuzz run "${fuzz_flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
            -max_total_time="$seconds" -dict=dict/tally.dict -max_len=65536 -timeout=10 \
            -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=1
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    else
        TALLY_FUZZ_TARGET="$target" TALLY_FUZZ_SECS="$seconds" \
            cargo test --release --no-default-features --test mutation_loop -- --ignored --nocapture >"$log" 2>&1 || status=1
        execs=$(grep -o 'executions: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    fi
    elapsed=$(( $(date +%s) - start ))
    crashes=$(( $(find "artifacts/$target" -type f | wc -l) - crashes_before ))
    line="$target: ${execs:-?} executions in ${elapsed} s (including build), $crashes new crash(es)"
    summary+=("$line")
    echo "fuzz.sh: $line (log: $log)" >&2
    if [ "$crashes" -gt 0 ]; then
        status=1
        grep -m 5 -E 'panicked|ERROR|SUMMARY' "$log" >&2 || true
        find "artifacts/$target" -type f -newer "$log" >&2 || true
    fi
done
echo "--- fuzz summary ($mode, ${seconds} s per target) ---"
printf '%s\n' "${summary[@]}"
exit "$status"
