#!/usr/bin/env bash
# Load comparison: postern vs nginx as reverse proxies in front of the same upstream, driven by
# the same load generator on this machine in one run: nginx proxy_pass, postern on a public route,
# postern on an authenticated route with a valid session cookie, postern with its access log on
# (written to a file), and a bare Pingora proxy (examples/bare_pingora.rs: the smallest ProxyHttp,
# on postern's allocator and runtime settings), once as it is and once with the client and
# upstream timeouts postern sets (what Pingora's timers cost).
# For each: requests/s, p99 latency, and CPU time per request (user + system time of the proxy's
# processes over the run, read from /proc, divided by the requests served: steadier than
# requests/s on a shared machine). Prints the ratios per round and their medians.
# Everything runs on loopback and stops by itself.
#
#   benches/load/run.sh                      # defaults: 10s per run, 64 connections, 3 rounds
#   DURATION=30s CONNECTIONS=128 benches/load/run.sh
#
# Needs nginx and wrk (installed from Debian's packages when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
ROUNDS="${ROUNDS:-3}"

. benches/load/common.sh

echo "building postern and the bare Pingora baseline (release)..." >&2
cargo build --release --quiet --bin postern --example bare_pingora
POSTERN="$CARGO_TARGET_DIR/release/postern"
BARE="$CARGO_TARGET_DIR/release/examples/bare_pingora"


UP=$(port); NGX=$(port); PST=$(port); OPS=$(port); BAR=$(port); BRT=$(port); PSL=$(port); OPL=$(port)
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

# The same postern with its access log on, written to a file as a deployment would.
sed -e "s/127.0.0.1:$PST/127.0.0.1:$PSL/; s/127.0.0.1:$OPS/127.0.0.1:$OPL/" \
    -e "s|$work/data|$work/data-logged|; s/access_log = false/access_log = true/" \
    -e 's/level = "warn"/level = "info"/' "$work/postern.toml" > "$work/postern-logged.toml"

start_upstream
nginx -p "$work/ngx" -c "$work/ngx/nginx.conf" -g 'daemon off;' & NGX_PID=$!; pids+=($!)
"$POSTERN" serve -c "$work/postern.toml" 2>"$work/postern.log" & PST_PID=$!; pids+=($!)
"$POSTERN" serve -c "$work/postern-logged.toml" 2>"$work/access.log" & PSL_PID=$!; pids+=($!)
# The bare proxy on postern's runtime settings (one runtime per thread, as postern's default).
BARE_WORK_STEALING=false "$BARE" "127.0.0.1:$BAR" "127.0.0.1:$UP" "$cores" 2>"$work/bare.log" & BAR_PID=$!; pids+=($!)
# And with the client and upstream timeouts postern sets: what Pingora's timers cost.
BARE_WORK_STEALING=false BARE_TIMEOUTS=true "$BARE" "127.0.0.1:$BRT" "127.0.0.1:$UP" "$cores" 2>"$work/bare-timeouts.log" & BRT_PID=$!; pids+=($!)
wait_port "$UP"; wait_port "$NGX"; wait_port "$PST"; wait_port "$PSL"; wait_port "$BAR"; wait_port "$BRT"

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
for p in "$PST" "$PSL" "$NGX" "$BAR" "$BRT"; do wrk -t1 -c16 -d2s "http://127.0.0.1:$p/warm" >/dev/null; done

# name|url|cookie|pids
runs=(
    "nginx|http://127.0.0.1:$NGX/bench||$NGX_PID"
    "postern|http://127.0.0.1:$PST/bench||$PST_PID"
    "postern+login|http://127.0.0.1:$PST/private/bench|$SESSION_COOKIE|$PST_PID"
    "postern+log|http://127.0.0.1:$PSL/bench||$PSL_PID"
    "bare Pingora|http://127.0.0.1:$BAR/bench||$BAR_PID"
    "bare+timeouts|http://127.0.0.1:$BRT/bench||$BRT_PID"
)
declare -A RPS CPU P99
ratio_names=("postern/nginx req/s" "postern/bare req/s" "postern/nginx cpu" "postern/bare cpu" \
    "login/public req/s" "login/public cpu" "log-on/log-off req/s" "log-on/log-off cpu" \
    "postern/bare+timeouts cpu")
declare -A RATIOS
for round in $(seq 1 "$ROUNDS"); do
    for run in "${runs[@]}"; do
        IFS='|' read -r name url cookie pid <<<"$run"
        read -r rps p99 cpu err <<<"$(measure_url "$url" "$cookie" "$pid")"
        printf 'round %s %-14s %9.0f req/s  p99 %-9s %7.1f us CPU/request  errors: %s\n' \
            "$round" "$name" "$rps" "$p99" "$cpu" "$err" >&2
        RPS[$name]+="$rps "; CPU[$name]+="$cpu "; P99[$name]+="$(to_ms "$p99") "
        declare -g "rps_${name//[^a-zA-Z]/_}=$rps" "cpu_${name//[^a-zA-Z]/_}=$cpu"
    done
    r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
    values=(
        "$(r "$rps_postern" "$rps_nginx")" "$(r "$rps_postern" "$rps_bare_Pingora")"
        "$(r "$cpu_postern" "$cpu_nginx")" "$(r "$cpu_postern" "$cpu_bare_Pingora")"
        "$(r "$rps_postern_login" "$rps_postern")" "$(r "$cpu_postern_login" "$cpu_postern")"
        "$(r "$rps_postern_log" "$rps_postern")" "$(r "$cpu_postern_log" "$cpu_postern")"
        "$(r "$cpu_postern" "$cpu_bare_timeouts")"
    )
    line="round $round ratios:"
    for i in "${!ratio_names[@]}"; do
        RATIOS[$i]+="${values[$i]} "
        line+=" ${ratio_names[$i]} ${values[$i]};"
    done
    echo "$line" >&2
done

echo
echo "reverse proxy, $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds (medians), $cores cores shared by load generator, proxy and upstream"
printf '%-14s %12s %10s %16s\n' "proxy" "requests/s" "p99 ms" "CPU us/request"
for run in "${runs[@]}"; do
    IFS='|' read -r name _ <<<"$run"
    # shellcheck disable=SC2086
    printf '%-14s %12.0f %10.2f %16.1f\n' "$name" "$(median ${RPS[$name]})" "$(median ${P99[$name]})" "$(median ${CPU[$name]})"
done
echo
echo "ratios (median of the rounds' ratios; CPU: lower is better)"
for i in "${!ratio_names[@]}"; do
    # shellcheck disable=SC2086
    printf '%-26s %6.2f   (rounds: %s)\n' "${ratio_names[$i]}" "$(median ${RATIOS[$i]})" "${RATIOS[$i]% }"
done
awk -v l="$(median ${RATIOS[4]})" 'BEGIN { printf "session check cost (1 - logged-in/public requests/s): %.1f%%\n", (1 - l) * 100 }'
awk -v l="$(median ${RATIOS[6]})" 'BEGIN { printf "access log cost (1 - log-on/log-off requests/s): %.1f%%\n", (1 - l) * 100 }'
