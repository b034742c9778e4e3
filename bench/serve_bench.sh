#!/usr/bin/env bash
# Inference server throughput and latency under load from a separate process (wrk, Debian's):
# one-row requests at each concurrency of $CONCURRENCY (default "1 8 32 64"), dynamic batching off
# (--max-batch-size 0) and on (the model's config.toml), each as JSON and in the binary tensor
# extension (binary outputs too), for the Fashion-MNIST CNN (raw pixels) and the fraud MLP (a raw
# record) of examples/serving/repo; and each model's own forward rate in process on the same
# cores (`ronghe perf --in-process`), the limit a server can reach. Appends one JSON line per run
# to OUT.
#   bench/serve_bench.sh BUILD OUT.jsonl [SECONDS]
#   bench/serve_bench.sh --bodies-only DIR BUILD   writes the bodies (DIR/M.json, DIR/M.bin, DIR/M.hl)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bodies_only=0
if [ "${1:-}" = --bodies-only ]; then
  bodies_only=1
  work=$2
  shift 2
  set -- "$1" /dev/null
fi
build=$1
out=$2
secs=${3:-10}
ronghe="$build/ronghe/cli/ronghe"
if [ "$bodies_only" = 0 ]; then
  command -v wrk >/dev/null || { echo "serve_bench: wrk not found (apt-get install wrk)" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
fi
export RONGHE_HOME="$work/home"

# One-row bodies: the first example image; the first example loan record.
first_image() {
  # examples/serving/fashion-cnn.json holds two images [2,1,28,28]; keep the first 784 values.
  local data
  data=$(sed -e 's/.*"data":\[//' -e 's/\].*//' "$root/examples/serving/fashion-cnn.json" | tr ',' '\n' | head -784 | paste -sd, -)
  printf '{"inputs":[{"name":"pixels","datatype":"UINT8","shape":[1,1,28,28],"data":[%s]}]}\n' "$data"
}
first_image > "$work/fashion-cnn.json"
record=$(grep -m1 '"{' "$root/examples/serving/fraud.json" | sed -e 's/^ *//' -e 's/,$//')
printf '{"inputs":[{"name":"record","datatype":"BYTES","shape":[1],"data":[%s]}]}\n' "$record" > "$work/fraud.json"
# The same requests in the binary form: "$work/M.bin" and its JSON header's length.
for model in fashion-cnn fraud; do
  python3 - "$work/$model.json" "$work/$model.bin" > "$work/$model.hl" <<'PY'
import json, struct, sys
d = json.load(open(sys.argv[1]))
blob = b""
for t in d["inputs"]:
    data = t.pop("data")
    if t["datatype"] == "UINT8":
        b = bytes(data)
    elif t["datatype"] == "FP32":
        b = struct.pack("<%df" % len(data), *data)
    else:  # BYTES: 4-byte little-endian length, then the bytes
        b = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in data)
    t["parameters"] = {"binary_data_size": len(b)}
    blob += b
d["parameters"] = {"binary_data_output": True}
head = json.dumps(d, separators=(",", ":")).encode()
open(sys.argv[2], "wb").write(head + blob)
print(len(head))
PY
done
[ "$bodies_only" = 1 ] && exit 0
concurrency=${CONCURRENCY:-1 8 32 64}

# The in-process limit: each model's forward pass on one-per-core instances, as the server runs it.
for model in fashion-cnn fraud; do
  version=""
  [ "$model" = fraud ] && version="--version 1"
  line=$("$ronghe" perf --in-process --repo "$root/examples/serving/repo" --model "$model" $version \
         --batch-sizes 1,8,16,32,64 --duration 3 --json | tr -d '\n ')
  echo "{\"model\":\"$model\",\"in_process\":$line}" >> "$out"
done

# "rows batches" executed so far by a model's versions, from /metrics.
batch_sums() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '
    index($0, "ronghe_inference_batch_size_sum{model=\"" m "\"") == 1 { s += $2 }
    index($0, "ronghe_inference_batch_size_count{model=\"" m "\"") == 1 { c += $2 }
    END { printf "%d %d", s, c }'
}

for model in fashion-cnn fraud; do
  for mode in off on; do
    port=$(( 20000 + RANDOM % 20000 ))
    flags=()
    [ "$mode" = off ] && flags=(--max-batch-size 0)
    "$ronghe" serve --repo "$root/examples/serving/repo" --host 127.0.0.1 --http "$port" "${flags[@]}" \
      > "$work/serve.out" 2> "$work/serve.err" &
    pid=$!
    for _ in $(seq 1 300); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
    path=/v2/models/$model/infer
    [ "$model" = fraud ] && path=/v2/models/fraud/versions/1/infer  # the MLP itself, not the A/B split
    for conc in $concurrency; do
      for form in json binary; do
        echo "serve_bench: $model batching $mode concurrency $conc $form" >&2
        body="$work/$model.json"
        hl=""
        if [ "$form" = binary ]; then body="$work/$model.bin"; hl=$(cat "$work/$model.hl"); fi
        # Warm-up, then the measured run.
        BODY="$body" HEADER_LENGTH="$hl" wrk -t1 -c"$conc" -d2s -s "$root/bench/serve_wrk.lua" "http://127.0.0.1:$port$path" >/dev/null
        before=$(batch_sums "$port" "$model")
        line=$(BODY="$body" HEADER_LENGTH="$hl" wrk -t1 -c"$conc" -d"${secs}s" --timeout 10s -s "$root/bench/serve_wrk.lua" \
               "http://127.0.0.1:$port$path" | grep '^{' || echo '{"error":"wrk gave no result"}')
        after=$(batch_sums "$port" "$model")
        batches=$(echo "$before $after" | awk '{ c = $4 - $2; printf "%.2f", (c > 0 ? ($3 - $1) / c : 0) }')
        echo "{\"model\":\"$model\",\"batching\":\"$mode\",\"form\":\"$form\",\"concurrency\":$conc,\"mean_batch_rows\":$batches,\"result\":$line}" >> "$out"
      done
    done
    kill -TERM "$pid"
    wait "$pid" || true
  done
done
