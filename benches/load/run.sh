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
mkdir -p "$work/up" "$work/ngx"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1;
error_log $work/up/error.log;
pid $work/up/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$UP;
        keepalive_requests 100000;
        location / { default_type text/plain; return 200 "hello from the upstream app\n"; }
    }
}
CONF
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
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
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

nginx -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' & pids+=($!)
nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -g 'daemon off;' & pids+=($!)
"$POSTERN" serve -c "$work/postern.toml" 2>"$work/postern.log" & pids+=($!)
"$BARE" "127.0.0.1:$BAR" "127.0.0.1:$UP" "$cores" 2>"$work/bare.log" & pids+=($!)
wait_port "$UP"; wait_port "$NGX"; wait_port "$PST"; wait_port "$BAR"

curl -fsS "http://127.0.0.1:$PST/check" >/dev/null
curl -fsS "http://127.0.0.1:$NGX/check" >/dev/null

# A logged-in user for the authenticated runs: the session cookie goes with every request.
printf 'bench-password-123\n' | "$POSTERN" user add bench --email bench@example.com --password-stdin -c "$work/postern.toml" >/dev/null
SESSION_COOKIE="$(curl -fsS -D - -o /dev/null -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"bench-password-123"}' "http://127.0.0.1:$PST/_postern/login" \
    | awk 'tolower($1) == "set-cookie:" { split($2, kv, ";"); print kv[1] }')"
[ -n "$SESSION_COOKIE" ] || { echo "login failed" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $SESSION_COOKIE" "http://127.0.0.1:$PST/private/check")" = 200 ] \
    || { echo "the session cookie does not open /private/" >&2; exit 1; }

# wrk prints e.g. "Requests/sec:  51234.56" and, with --latency, "99%    1.23ms".
measure() {
    local out rps p99
    out="$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency ${2:+-H "Cookie: $2"} "http://127.0.0.1:$1${3:-/bench}")"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')"
    echo "$rps $p99 ${errors:-none}"
}
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }

echo "warming up..." >&2
wrk -t1 -c16 -d2s "http://127.0.0.1:$PST/warm" >/dev/null
wrk -t1 -c16 -d2s "http://127.0.0.1:$NGX/warm" >/dev/null
wrk -t1 -c16 -d2s "http://127.0.0.1:$BAR/warm" >/dev/null

best_p=0; best_n=0; best_b=0; best_s=0; p99_p=""; p99_n=""; p99_b=""; p99_s=""
for round in $(seq 1 "$ROUNDS"); do
    read -r rps p99 err <<<"$(measure "$NGX")"
    echo "round $round nginx:   ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_n" 'BEGIN{exit !(a>b)}'; then best_n=$rps; p99_n=$p99; fi
    read -r rps p99 err <<<"$(measure "$PST")"
    echo "round $round postern: ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_p" 'BEGIN{exit !(a>b)}'; then best_p=$rps; p99_p=$p99; fi
    read -r rps p99 err <<<"$(measure "$PST" "$SESSION_COOKIE" /private/bench)"
    echo "round $round postern, logged in: ${rps} req/s  p99 ${p99}  errors: ${err}" >&2
    if awk -v a="$rps" -v b="$best_s" 'BEGIN{exit !(a>b)}'; then best_s=$rps; p99_s=$p99; fi
    read -r rps p99 err <<<"$(measure "$BAR")"
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
