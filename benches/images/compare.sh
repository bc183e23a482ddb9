#!/usr/bin/env bash
# postern's image pipeline vs sharp (libvips) on this machine, same inputs, same transforms, same
# concurrency, in one run. Prints ops/s for each, the ratio postern/sharp and the output sizes.
#
#   benches/images/compare.sh                # 10 s per case, concurrency = cores
#   SECONDS_PER_CASE=20 CONCURRENCY=1 benches/images/compare.sh
#
# Inputs are sharp's own benchmark images (benches/images/inputs, or IMAGES=dir). Needs node and
# npm (sharp is installed into benches/images/node_modules, which git ignores).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGES="${IMAGES:-benches/images/inputs}"
SECONDS_PER_CASE="${SECONDS_PER_CASE:-10}"
CONCURRENCY="${CONCURRENCY:-$(nproc)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/postern-target}"
JPEG="$IMAGES/2569067123_aca715a2ee_o.jpg"
PNG="$IMAGES/alpha-premultiply-2048x1536-paper.png"
for f in "$JPEG" "$PNG"; do [ -f "$f" ] || { echo "missing input $f (set IMAGES)" >&2; exit 1; }; done

if [ ! -d benches/images/node_modules/sharp ]; then
    echo "installing sharp..." >&2
    (cd benches/images && npm install --no-audit --no-fund --silent --no-save sharp@0.34 >/dev/null)
fi
echo "building the postern image bench (release)..." >&2
cargo build --release --quiet --example image_bench
BENCH="$CARGO_TARGET_DIR/release/examples/image_bench"
SHARP_VERSION="$(node -p 'require("./benches/images/node_modules/sharp/package.json").version')"

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

printf '\nimage transforms, %s s per case, concurrency %s, %s cores; sharp %s\n' \
    "$SECONDS_PER_CASE" "$CONCURRENCY" "$(nproc)" "$SHARP_VERSION"
printf '%-34s %12s %12s %8s %14s %14s %8s\n' case "postern op/s" "sharp op/s" ratio "postern bytes" "sharp bytes" "size"
for spec in "jpeg-720-jpeg-q80|$JPEG|720|jpeg|80" "jpeg-720-webp-q80|$JPEG|720|webp|80" "png-rgba-720-png|$PNG|720|png|80"; do
    IFS='|' read -r name input width format quality <<<"$spec"
    ours="$("$BENCH" "$input" "$width" "$format" "$quality" "$CONCURRENCY" "$SECONDS_PER_CASE")"
    theirs="$(UV_THREADPOOL_SIZE="$CONCURRENCY" node benches/images/sharp-bench.mjs "$input" "$width" "$format" "$quality" "$CONCURRENCY" "$SECONDS_PER_CASE")"
    po="$(field "$ours" ops_per_s)"; so="$(field "$theirs" ops_per_s)"
    pb="$(field "$ours" bytes)"; sb="$(field "$theirs" bytes)"
    awk -v n="$name" -v po="$po" -v so="$so" -v pb="$pb" -v sb="$sb" \
        'BEGIN { printf "%-34s %12.1f %12.1f %8.2f %14d %14d %+7.1f%%\n", n, po, so, po/so, pb, sb, (pb/sb-1)*100 }'
done
