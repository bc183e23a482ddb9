#!/usr/bin/env bash
# Load comparison: postern vs nginx as reverse proxies in front of the same upstream, driven by
# the same load generator on this machine in one run: nginx proxy_pass, postern on a public route,
# postern on an authenticated route with a valid session cookie, and a bare Pingora proxy.
# Prints requests/s, p99 latency, the ratios and the cost of the session check.
# Everything runs on loopback and stops by itself.
#
#   benches/load/run.sh                      # defaults: 10s per run, 64 connections, 2 threads
#   DURATION=30s CONNECTIONS=128 benches/load/run.sh
#
# Needs nginx and wrk (installed from Debian's packages when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
ROUNDS="${ROUNDS:-2}"

. benches/load/common.sh

echo "building postern and the bare Pingora baseline (release)..." >&2
cargo build --release --quiet --bin postern --example bare_pingora
POSTERN="$CARGO_TARGET_DIR/release/postern"
BARE="$CARGO_TARGET_DIR/release/examples/bare_pingora"


UP=$(port); NGX=$(port); PST=$(port); OPS=$(port); BAR=$(port)
cores=$(nproc)

# The upstream app: a static 200 from its own nginx, the same for both proxies.
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
        listen 127.0.0.1:$NGX;
        keepalive_requests 1000;
$(nginx_proxy_location)
    }
}
CONF
{ postern_base_config; cat; } > "$work/postern.toml" <<CONF
[upstreams.app]
backends = ["http://127.0.0.1:$UP"]
[[routes]]
name = "postern"
path = "/_postern/"
kind = "builtin"
[[routes]]
name = "private"
path = "/private/"
upstream = "app"
access = "authenticated"
[[routes]]
name = "app"
path = "/"
upstream = "app"
access = "public"
CONF

start_upstream
nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -g 'daemon off;' & pids+=($!)
"$POSTERN" serve -c "$work/postern.toml" 2>"$work/postern.log" & pids+=($!)
"$BARE" "127.0.0.1:$BAR" "127.0.0.1:$UP" "$cores" 2>"$work/bare.log" & pids+=($!)
wait_port "$UP"; wait_port "$NGX"; wait_port "$PST"; wait_port "$BAR"

curl -fsS "http://127.0.0.1:$PST/check" >/dev/null
curl -fsS "http://127.0.0.1:$NGX/check" >/dev/null

# A logged-in user for the authenticated runs: the session cookie goes with every request.
printf 'proxy-load-password-987\n' | "$POSTERN" user add bench --email bench@example.com --password-stdin -c "$work/postern.toml" >/dev/null
SESSION_COOKIE="$(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"proxy-load-password-987"}' "http://127.0.0.1:$PST/_postern/login" \
    | awk 'tolower($1) == "set-cookie:" { split($2, kv, ";"); print kv[1] }')"
[ -n "$SESSION_COOKIE" ] || { echo "login failed" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $SESSION_COOKIE" "http://127.0.0.1:$PST/private/check")" = 200 ] \
    || { echo "the session cookie does not open /private/" >&2; exit 1; }


echo "warming up..." >&2
wrk -t1 -c16 -d2s "http://127.0.0.1:$PST/warm" >/dev/null
wrk -t1 -c16 -d2s "http://127.0.0.1:$NGX/warm" >/dev/null
wrk -t1 -c16 -d2s "http://127.0.0.1:$BAR/warm" >/dev/null

best_p=0; best_n=0; best_b=0; best_s=0; p99_p=""; p99_n=""; p99_b=""; p99_s=""
for round in $(seq 1 "$ROUNDS"); do
    read -r rps p99 err <<<"$(measure_url "http://127.0.0.1:$NGX/bench")"
    echo "round $round nginx:   ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_n" 'BEGIN{exit !(a>b)}'; then best_n=$rps; p99_n=$p99; fi
    read -r rps p99 err <<<"$(measure_url "http://127.0.0.1:$PST/bench")"
    echo "round $round postern: ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_p" 'BEGIN{exit !(a>b)}'; then best_p=$rps; p99_p=$p99; fi
    read -r rps p99 err <<<"$(measure_url "http://127.0.0.1:$PST/private/bench" "$SESSION_COOKIE")"
    echo "round $round postern, logged in: ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_s" 'BEGIN{exit !(a>b)}'; then best_s=$rps; p99_s=$p99; fi
    read -r rps p99 err <<<"$(measure_url "http://127.0.0.1:$BAR/bench")"
    echo "round $round bare Pingora: ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_b" 'BEGIN{exit !(a>b)}'; then best_b=$rps; p99_b=$p99; fi
done

echo
echo "reverse proxy, $CONNECTIONS connections, $DURATION per run, best of $ROUNDS, $cores cores shared by load generator, proxy and upstream"
printf '%-14s %14s %10s\n' "proxy" "requests/s" "p99 ms"
printf '%-14s %14.0f %10.2f\n' "nginx" "$best_n" "$(to_ms "$p99_n")"
printf '%-14s %14.0f %10.2f\n' "postern" "$best_p" "$(to_ms "$p99_p")"
printf '%-14s %14.0f %10.2f\n' "postern+login" "$best_s" "$(to_ms "$p99_s")"
printf '%-14s %14.0f %10.2f\n' "bare Pingora" "$best_b" "$(to_ms "$p99_b")"
awk -v p="$best_p" -v n="$best_n" 'BEGIN { printf "ratio postern/nginx (requests/s): %.2f\n", p/n }'
awk -v p="$best_p" -v b="$best_b" 'BEGIN { printf "ratio postern/bare Pingora (requests/s): %.2f\n", p/b }'
awk -v p="$best_p" -v s="$best_s" 'BEGIN { printf "session check cost (1 - logged-in/public requests/s): %.1f%%\n", (1 - s/p) * 100 }'
awk -v s="$best_s" -v n="$best_n" 'BEGIN { printf "ratio postern logged-in/nginx (requests/s): %.2f\n", s/n }'
