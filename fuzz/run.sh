#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each and prints runs and crashes.
#
#   fuzz/run.sh                       # 60 s per target
#   fuzz/run.sh 300 path_routing jwt  # 5 minutes each for two targets
#   fuzz/run.sh --stable 10           # the stable-toolchain runner
#   fuzz/run.sh jwt                   # one target, 60 s
#   FUZZ_PROFILE=dev fuzz/run.sh --stable 5   # unoptimized, with overflow checks (CI's smoke run)
#
# Environment: FUZZ_PROFILE (the stable runner's cargo profile, default release), FUZZ_SEED (the
# stable runner's random seed, printed at the start, to replay a run), CARGO_TARGET_DIR (stable
# runner, default /var/tmp/postern-target), FUZZ_TARGET_DIR (libFuzzer's sanitizer build, default
# /var/tmp/postern-fuzz-target). libFuzzer keeps what it learns in fuzz/corpus/TARGET/.
#
# With cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain it runs libFuzzer with
# coverage guidance and AddressSanitizer (`cargo +nightly fuzz run`); otherwise, or with
# --stable, examples/fuzz_stable.rs on the stable toolchain. Crashing inputs land in
# fuzz/artifacts/TARGET/; add the input to the target's seeds in src/fuzzing.rs (or a test)
# once fixed, so it stays fixed. Exit code 1 when anything crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=auto
if [ "${1:-}" = "--stable" ]; then mode=stable; shift; fi
SECONDS_PER_TARGET=60
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then SECONDS_PER_TARGET="$1"; shift; fi
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^postern-fuzz$')
fi

if [ "$mode" = auto ]; then
    if cargo +nightly fuzz --version >/dev/null 2>&1; then mode=libfuzzer; else mode=stable; fi
fi

if [ "$mode" = stable ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/postern-target}"
    echo "cargo-fuzz or a nightly toolchain missing (or --stable): the stable runner, without coverage guidance" >&2
    profile="${FUZZ_PROFILE:-release}"
    cargo build --profile "$profile" --quiet --example fuzz_stable
    [ "$profile" = dev ] && profile=debug
    exec "$CARGO_TARGET_DIR/$profile/examples/fuzz_stable" --seconds "$SECONDS_PER_TARGET" "${targets[@]}"
fi

# libFuzzer builds with sanitizer flags: a target directory of its own, reused between runs.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/postern-fuzz-target}"
printf 'libFuzzer (cargo fuzz), %s s per target\n' "$SECONDS_PER_TARGET"
failed=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log="$(mktemp)"
    if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -max_len=4096 >"$log" 2>&1; then
        crashes=0
    else
        crashes=1
        failed=1
        grep -E 'panicked|ERROR|Test unit written|SUMMARY' "$log" | head -5 | sed 's/^/  /'
    fi
    runs="$(awk '/stat::number_of_executed_units/ { print $NF }' "$log" | tail -1)"
    if [ -z "$runs" ] && [ "$crashes" = 0 ]; then
        echo "  $target did not run:" >&2; tail -20 "$log" >&2; failed=1
    fi
    printf '%-18s %10s runs  %s crash(es)\n' "$target" "${runs:-0}" "$crashes"
    rm -f "$log"
done
exit "$failed"
