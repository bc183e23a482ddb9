#!/usr/bin/env bash
# Asset load comparison, in one run on this machine:
#  - streaming: a 16 MiB private object fetched through postern (stream mode, SigV4-signed, to
#    examples/s3_server.rs, an S3 server that verifies signatures) vs fetched directly from that S3 server
#    with a presigned URL, same connections and duration; prints bytes/s and the ratio;
#  - redirects: postern answering 302 to a fresh presigned URL (redirect mode) vs nginx answering a
#    fixed 302; prints requests/s, CPU time per request and the ratios.
# Medians over the rounds.
#
#   benches/load/assets.sh                   # defaults: 10s per run, 3 rounds
#   DURATION=20s ROUNDS=3 benches/load/assets.sh
#
# Needs nginx and wrk (installed from Debian's packages when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
STREAM_CONNECTIONS="${STREAM_CONNECTIONS:-8}"
REDIRECT_CONNECTIONS="${REDIRECT_CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"

. benches/load/common.sh

echo "building postern and the S3 server (release)..." >&2
cargo build --release --quiet --bin postern --example s3_server
POSTERN="$CARGO_TARGET_DIR/release/postern"
S3="$CARGO_TARGET_DIR/release/examples/s3_server"


S3P=$(port); NGX=$(port); PST=$(port); OPS=$(port)
cores=$(nproc)
export BENCH_S3_KEY="AKIDBENCH" BENCH_S3_SECRET="bench-secret-key-for-the-load-script"

mkdir -p "$work/s3/media" "$work/ngx"
head -c $((16 << 20)) /dev/urandom > "$work/big.bin"

cat > "$work/ngx/nginx.conf" <<CONF
worker_processes $cores;
error_log $work/ngx/error.log;
pid $work/ngx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGX;
        keepalive_requests 1000;
        location / { return 302 "http://127.0.0.1:$S3P/media/shared/big.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256"; }
    }
}
CONF
{ postern_base_config; cat; } > "$work/postern.toml" <<CONF
[stores.media]
type = "s3"
bucket = "media"
region = "us-east-1"
endpoint = "http://127.0.0.1:$S3P"
access_key_id = "\${BENCH_S3_KEY}"
secret_access_key = "\${BENCH_S3_SECRET}"
[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"
[[routes]]
name = "stream"
path = "/stream/"
kind = "assets"
store = "media"
key = "shared/{path}"
access = "public"
[[routes]]
name = "go"
path = "/go/"
kind = "assets"
store = "media"
key = "shared/{path}"
access = "public"
mode = "redirect"
CONF

"$S3" "127.0.0.1:$S3P" "$work/s3" "$BENCH_S3_KEY" "$BENCH_S3_SECRET" 2>"$work/s3.log" & pids+=($!)
nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -g 'daemon off;' & NGX_PID=$!; pids+=($!)
"$POSTERN" serve -c "$work/postern.toml" 2>"$work/postern.log" & PST_PID=$!; pids+=($!)
wait_port "$S3P"; wait_port "$NGX"; wait_port "$PST"

# Uploaded through the S3 API, so that the server keeps the object's ETag and serves GETs without
# hashing the object each time (as S3 does).
curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$BENCH_S3_KEY:$BENCH_S3_SECRET" \
    -H "x-amz-content-sha256: $(sha256sum "$work/big.bin" | cut -d' ' -f1)" \
    -T "$work/big.bin" "http://127.0.0.1:$S3P/media/shared/big.bin" >/dev/null \
    || { echo "cannot upload the object to the S3 server" >&2; exit 1; }

PRESIGNED="$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$PST/go/big.bin" | awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')"
[ -n "$PRESIGNED" ] || { echo "no presigned URL from postern" >&2; exit 1; }
direct_sum="$(curl -fsS "$PRESIGNED" | sha256sum)"
proxied_sum="$(curl -fsS "http://127.0.0.1:$PST/stream/big.bin" | sha256sum)"
[ "$direct_sum" = "$proxied_sum" ] || { echo "postern's stream differs from the object" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3P/media/shared/big.bin")" = 403 ] \
    || { echo "the S3 server does not check signatures" >&2; exit 1; }

# wrk: "Requests/sec:  51234.56", "Transfer/sec:  1.21GB".
wrk_run() { wrk -t"$WRK_THREADS" -c"$1" -d"$DURATION" "$2"; }
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
bytes_per_s() {
    awk '/Transfer\/sec/ { v=$2; m=1;
        if (v ~ /GB$/) m=1024*1024*1024; else if (v ~ /MB$/) m=1024*1024; else if (v ~ /KB$/) m=1024;
        sub(/[KMG]?B$/, "", v); printf "%.0f\n", v*m }' <<<"$1"
}
errors() { awk '/Non-2xx|Non-3xx|Socket errors/ {print}' <<<"$1" | tr '\n' ' '; }

echo "warming up..." >&2
wrk -t1 -c4 -d2s "http://127.0.0.1:$PST/stream/big.bin" >/dev/null
wrk -t1 -c4 -d2s "$PRESIGNED" >/dev/null

declare -a DIRECT STREAM NGINX_RPS REDIRECT_RPS NGINX_CPU REDIRECT_CPU RATIO_RPS RATIO_CPU
for round in $(seq 1 "$ROUNDS"); do
    out="$(wrk_run "$STREAM_CONNECTIONS" "$PRESIGNED")"
    echo "round $round direct from S3: $(bytes_per_s "$out") B/s $(errors "$out")" >&2
    DIRECT+=("$(bytes_per_s "$out")")
    out="$(wrk_run "$STREAM_CONNECTIONS" "http://127.0.0.1:$PST/stream/big.bin")"
    echo "round $round through postern: $(bytes_per_s "$out") B/s $(errors "$out")" >&2
    STREAM+=("$(bytes_per_s "$out")")
    CONNECTIONS="$REDIRECT_CONNECTIONS"
    read -r n_rps _ n_cpu n_err <<<"$(measure_url "http://127.0.0.1:$NGX/go/big.bin" "" "$NGX_PID")"
    echo "round $round nginx fixed 302: $n_rps req/s, $n_cpu us CPU/request, errors: $n_err" >&2
    read -r p_rps _ p_cpu p_err <<<"$(measure_url "http://127.0.0.1:$PST/go/big.bin" "" "$PST_PID")"
    echo "round $round postern presigned 302: $p_rps req/s, $p_cpu us CPU/request, errors: $p_err" >&2
    NGINX_RPS+=("$n_rps"); REDIRECT_RPS+=("$p_rps"); NGINX_CPU+=("$n_cpu"); REDIRECT_CPU+=("$p_cpu")
    RATIO_RPS+=("$(awk -v a="$p_rps" -v b="$n_rps" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
    RATIO_CPU+=("$(awk -v a="$p_cpu" -v b="$n_cpu" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
done

direct="$(median "${DIRECT[@]}")"; stream="$(median "${STREAM[@]}")"
echo
echo "assets, $DURATION per run, $ROUNDS rounds (medians), $cores cores shared by wrk, postern, nginx and the S3 server"
printf '%-32s %16s\n' "streaming 16 MiB object" "MiB/s"
awk -v v="$direct" 'BEGIN { printf "%-32s %16.0f\n", "direct from S3 (presigned)", v/1048576 }'
awk -v v="$stream" 'BEGIN { printf "%-32s %16.0f\n", "through postern (signed)", v/1048576 }'
awk -v p="$stream" -v d="$direct" 'BEGIN { printf "ratio postern/direct (bytes/s): %.2f\n", p/d }'
printf '%-32s %16s %16s\n' "302 redirects" "requests/s" "CPU us/request"
printf '%-32s %16.0f %16.1f\n' "nginx, fixed Location" "$(median "${NGINX_RPS[@]}")" "$(median "${NGINX_CPU[@]}")"
printf '%-32s %16.0f %16.1f\n' "postern, presigned per request" "$(median "${REDIRECT_RPS[@]}")" "$(median "${REDIRECT_CPU[@]}")"
printf 'ratio postern/nginx (requests/s): %.2f   (rounds: %s)\n' "$(median "${RATIO_RPS[@]}")" "${RATIO_RPS[*]}"
printf 'ratio postern/nginx (CPU/request): %.2f   (rounds: %s)\n' "$(median "${RATIO_CPU[@]}")" "${RATIO_CPU[*]}"
