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
