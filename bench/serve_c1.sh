#!/usr/bin/env bash
# Batching on vs off at one connection (or CONNECTIONS), measured so that a shared machine's drift
# does not decide it: ROUNDS (default 5) pairs, off first in odd rounds and on first in even ones,
# a fresh `ronghe serve` per run, wrk -cN for SECONDS (default 5) after a 1 s warm-up, binary
# one-row bodies for the CNN and the fraud MLP; prints each run as a JSON line on OUT and the
# medians of requests/s and p99, and their ratios, on stdout.
#   [CONNECTIONS=32] bench/serve_c1.sh BUILD OUT.jsonl [ROUNDS] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$1
out=$2
rounds=${3:-5}
secs=${4:-5}
conns=${CONNECTIONS:-1}
ronghe="$build/ronghe/cli/ronghe"
command -v wrk >/dev/null || { echo "serve_c1: wrk not found (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export RONGHE_HOME="$work/home"
# The same one-row bodies as serve_bench.sh, in the binary form (serve_bench.sh writes them).
CONCURRENCY=1 "$root/bench/serve_bench.sh" --bodies-only "$work" "$build" >/dev/null
for round in $(seq 1 "$rounds"); do
  order="off on"
  [ $((round % 2)) = 0 ] && order="on off"  # alternate which goes first, so drift cancels
  for mode in $order; do
    flags=()
    [ "$mode" = off ] && flags=(--max-batch-size 0)
    port=$(( 20000 + RANDOM % 20000 ))
    "$ronghe" serve --repo "$root/examples/serving/repo" --host 127.0.0.1 --http "$port" "${flags[@]}" \
      > "$work/serve.out" 2> "$work/serve.err" &
    pid=$!
    for _ in $(seq 1 300); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
    for model in fashion-cnn fraud; do
      path=/v2/models/$model/infer
      [ "$model" = fraud ] && path=/v2/models/fraud/versions/1/infer
      export BODY="$work/$model.bin" HEADER_LENGTH=$(cat "$work/$model.hl")
      wrk -t1 -c"$conns" -d1s -s "$root/bench/serve_wrk.lua" "http://127.0.0.1:$port$path" >/dev/null
      line=$(wrk -t1 -c"$conns" -d"${secs}s" -s "$root/bench/serve_wrk.lua" "http://127.0.0.1:$port$path" | grep '^{')
      echo "{\"round\":$round,\"connections\":$conns,\"model\":\"$model\",\"batching\":\"$mode\",\"result\":$line}" >> "$out"
    done
    kill -TERM "$pid"
    wait "$pid" || true
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
for model in ("fashion-cnn", "fraud"):
    med = {(m, k): statistics.median(r["result"][k] for r in runs if r["model"] == model and r["batching"] == m)
           for m in ("off", "on") for k in ("rps", "p99_ms")}
    print(f"{model}: median req/s off {med['off', 'rps']:.0f}, on {med['on', 'rps']:.0f}, "
          f"on/off {med['on', 'rps'] / med['off', 'rps']:.2f}; median p99 off {med['off', 'p99_ms']:.2f} ms, "
          f"on {med['on', 'p99_ms']:.2f} ms")
PY
