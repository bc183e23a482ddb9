# Helpers shared by the load scripts: tools, free ports, waiting for listeners, cleanup.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/postern-target}"

need() {
    command -v "$1" >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "$1 is missing: install the Debian package $2" >&2; exit 1
    fi
}

need nginx nginx-light
need wrk wrk

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; exit 1
}

# The [server], [ops] and [log] part of postern's config for a load run: listening on $PST and
# $OPS, quiet, one worker thread per core.
postern_base_config() {
    cat <<CONF
[server]
listen = "127.0.0.1:$PST"
data_dir = "$work/data"
threads = $cores
keepalive_requests = 1000
shutdown_grace_period = "0s"
[ops]
listen = "127.0.0.1:$OPS"
[log]
level = "warn"
access_log = false
CONF
}

# A scratch directory and a list of background processes, both gone when the script exits.
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The upstream app both proxies stand in front of: a static 200 from its own nginx on $UP.
start_upstream() {
    mkdir -p "$work/up"
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
    nginx -p "$work/up" -c "$work/up/nginx.conf" -g 'daemon off;' & pids+=($!)
}

# CPU time (user + system, clock ticks) used so far by processes PIDS and their children
# (nginx's workers are children of its master).
cpu_ticks() {
    local total=0 pid ticks
    for pid in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
        # Fields after the command name: utime and stime are the 12th and 13th.
        ticks="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}
CLK_TCK="$(getconf CLK_TCK)"

# One wrk run against URL (with COOKIE if given), charging the CPU time of processes PIDS (a
# space-separated list) to it: prints "requests/s p99 cpu-us-per-request errors".
# wrk prints e.g. "Requests/sec:  51234.56", "412345 requests in 8.00s" and, with --latency,
# "99%    1.23ms".
measure_url() {
    local out rps p99 errors requests before after
    before="$(cpu_ticks ${3:-})"
    out="$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency ${2:+-H "Cookie: $2"} "$1")"
    after="$(cpu_ticks ${3:-})"
    rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')"
    awk -v r="$rps" -v p="$p99" -v n="$requests" -v t=$((after - before)) -v hz="$CLK_TCK" -v e="${errors:-none}" \
        'BEGIN { printf "%s %s %.1f %s\n", r, p, (n > 0 ? t / hz * 1e6 / n : 0), e }'
}

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# wrk's latency ("850.00us", "1.23ms", "1.02s") in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }

# nginx's proxy_pass block for the comparison, the same for every scheme.
nginx_proxy_location() {
    cat <<'CONF'
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }
CONF
}
