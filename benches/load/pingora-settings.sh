#!/usr/bin/env bash
# Which Pingora settings move a bare Pingora proxy (examples/bare_pingora.rs) toward nginx: worker
# threads, one work-stealing runtime or one runtime per thread, the upstream keepalive pool, and
# what the client and upstream timeouts postern sets cost,
# each variant in front of the same upstream and driven by the same wrk run, rounds interleaved.
# Prints requests/s and CPU time per request (medians), and each variant against Pingora's
# defaults (work stealing, 128 pooled connections) with one thread per core.
#
#   benches/load/pingora-settings.sh
#   DURATION=5s ROUNDS=5 benches/load/pingora-settings.sh
#
# Needs nginx (the upstream) and wrk, installed from Debian's packages when missing and root.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-8s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
ROUNDS="${ROUNDS:-3}"

. benches/load/common.sh

echo "building the bare Pingora proxy (release)..." >&2
cargo build --release --quiet --example bare_pingora
BARE="$CARGO_TARGET_DIR/release/examples/bare_pingora"
cores=$(nproc)
UP=$(port)
start_upstream
wait_port "$UP"

# name|threads|work stealing|keepalive pool|timeouts
variants=(
    "default|$cores|true|128|false"
    "per-thread runtimes|$cores|false|128|false"
    "per-thread, timeouts|$cores|false|128|true"
    "1 thread|1|true|128|false"
    "$((cores * 2)) threads|$((cores * 2))|true|128|false"
    "per-thread, $((cores * 2)) threads|$((cores * 2))|false|128|false"
    "keepalive pool 16|$cores|true|16|false"
)
declare -A PORT PID RPS CPU
for v in "${variants[@]}"; do
    IFS='|' read -r name threads stealing pool timeouts <<<"$v"
    p=$(port)
    BARE_WORK_STEALING="$stealing" BARE_KEEPALIVE_POOL="$pool" BARE_TIMEOUTS="$timeouts" \
        "$BARE" "127.0.0.1:$p" "127.0.0.1:$UP" "$threads" 2>"$work/bare-$p.log" &
    PORT[$name]=$p; PID[$name]=$!; pids+=($!)
done
for v in "${variants[@]}"; do
    IFS='|' read -r name _ <<<"$v"
    wait_port "${PORT[$name]}"
    wrk -t1 -c16 -d2s "http://127.0.0.1:${PORT[$name]}/warm" >/dev/null
done

for round in $(seq 1 "$ROUNDS"); do
    for v in "${variants[@]}"; do
        IFS='|' read -r name _ <<<"$v"
        read -r rps p99 cpu err <<<"$(measure_url "http://127.0.0.1:${PORT[$name]}/bench" "" "${PID[$name]}")"
        printf 'round %s %-28s %9.0f req/s  p99 %-9s %6.1f us CPU/request  errors: %s\n' \
            "$round" "$name" "$rps" "$p99" "$cpu" "$err" >&2
        RPS[$name]+="$rps "; CPU[$name]+="$cpu "
    done
done

echo
echo "bare Pingora, $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds (medians), $cores cores shared by wrk, proxy and upstream"
printf '%-28s %8s %7s %6s %9s %11s %9s %11s\n' "variant" "threads" "steal" "pool" "timeouts" "requests/s" "CPU us" "vs default"
# shellcheck disable=SC2086
base_rps="$(median ${RPS[default]})"
for v in "${variants[@]}"; do
    IFS='|' read -r name threads stealing pool timeouts <<<"$v"
    # shellcheck disable=SC2086
    rps="$(median ${RPS[$name]})"; cpu="$(median ${CPU[$name]})"
    printf '%-28s %8s %7s %6s %9s %11.0f %9.1f %10.2fx\n' "$name" "$threads" "$stealing" "$pool" "$timeouts" "$rps" "$cpu" \
        "$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { print (b > 0 ? a / b : 0) }')"
done
