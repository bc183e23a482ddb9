#!/usr/bin/env bash
# HTTPS comparison: postern and nginx terminating TLS with the same certificate in front of the
# same upstream, driven by wrk over TLS (HTTP/1.1, keep-alive) on this machine in one run.
# Prints requests/s, p99 latency and the ratio postern/nginx.
#
#   benches/load/https.sh                    # defaults: 10s per run, 64 connections, 2 rounds
#   DURATION=30s CONNECTIONS=128 benches/load/https.sh
#
# Needs nginx, wrk and openssl (installed from Debian's packages when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
ROUNDS="${ROUNDS:-2}"

. benches/load/common.sh
need openssl openssl

echo "building postern (release)..." >&2
cargo build --release --quiet --bin postern
POSTERN="$CARGO_TARGET_DIR/release/postern"

UP=$(port); NGX=$(port); PST=$(port); OPS=$(port); TLS=$(port)
cores=$(nproc)

# One certificate for both: RSA 2048, as most deployments still serve.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

mkdir -p "$work/ngx"
cat > "$work/ngx/nginx.conf" <<CONF
worker_processes $cores;
error_log $work/ngx/error.log;
pid $work/ngx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    upstream app { server 127.0.0.1:$UP; keepalive 128; }
    server {
        listen 127.0.0.1:$NGX ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000;
$(nginx_proxy_location)
    }
}
CONF
{ postern_base_config; cat; } > "$work/postern.toml" <<CONF
[[server.tls]]
listen = "127.0.0.1:$TLS"
certificates = [{ cert = "$work/cert.pem", key = "$work/key.pem" }]
[upstreams.app]
backends = ["http://127.0.0.1:$UP"]
[[routes]]
name = "app"
path = "/"
upstream = "app"
access = "public"
CONF

start_upstream
nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -g 'daemon off;' & pids+=($!)
"$POSTERN" serve -c "$work/postern.toml" 2>"$work/postern.log" & pids+=($!)
wait_port "$UP"; wait_port "$NGX"; wait_port "$TLS"

curl -fsSk "https://localhost:$TLS/check" >/dev/null
curl -fsSk "https://localhost:$NGX/check" >/dev/null


echo "warming up..." >&2
wrk -t1 -c16 -d2s "https://localhost:$TLS/warm" >/dev/null
wrk -t1 -c16 -d2s "https://localhost:$NGX/warm" >/dev/null

best_p=0; best_n=0; p99_p=""; p99_n=""
for round in $(seq 1 "$ROUNDS"); do
    read -r rps p99 _cpu err <<<"$(measure_url "https://localhost:$NGX/bench")"
    echo "round $round nginx (TLS):   ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_n" 'BEGIN{exit !(a>b)}'; then best_n=$rps; p99_n=$p99; fi
    read -r rps p99 _cpu err <<<"$(measure_url "https://localhost:$TLS/bench")"
    echo "round $round postern (TLS): ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_p" 'BEGIN{exit !(a>b)}'; then best_p=$rps; p99_p=$p99; fi
done

echo
echo "HTTPS reverse proxy (TLS terminated by the proxy, wrk over TLS with keep-alive), $CONNECTIONS connections, $DURATION per run, best of $ROUNDS, $cores cores shared by load generator, proxy and upstream"
printf '%-14s %14s %10s\n' "proxy" "requests/s" "p99 ms"
printf '%-14s %14.0f %10.2f\n' "nginx" "$best_n" "$(to_ms "$p99_n")"
printf '%-14s %14.0f %10.2f\n' "postern" "$best_p" "$(to_ms "$p99_p")"
awk -v p="$best_p" -v n="$best_n" 'BEGIN { printf "ratio postern/nginx (requests/s): %.2f\n", p/n }'
