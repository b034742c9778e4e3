#!/usr/bin/env bash
# Runs the benchmarks and writes docs/benchmarks.md with the machine, the commands and the numbers.
# Training benchmarks run one process each (so peak RSS belongs to one configuration); the crypto
# operations run in one process; the end-to-end secure aggregation (about 7 minutes on 2 cores)
# in another.
#   bench/run.sh [BUILD_DIR]
# RONGHE_BENCH_REUSE=1 renders from JSON results already in BUILD_DIR/bench-results.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
results="$build/bench-results"
out="$root/docs/benchmarks.md"
mkdir -p "$results"

if [ "${RONGHE_BENCH_REUSE:-0}" != 1 ]; then
  rm -f "$results"/*.json
  for n in $("$build/bench/train_bench" --benchmark_list_tests); do
    echo "bench: $n" >&2
    "$build/bench/train_bench" --benchmark_filter="^${n}\$" --benchmark_format=json > "$results/train_$(echo "$n" | tr '/:' '__').json"
  done
  echo "bench: crypto operations" >&2
  "$build/bench/crypto_bench" --benchmark_filter='BM_(Encrypt|TextbookEncrypt|Decrypt|PartialDecrypt|Prove|Verify|VerifyBatch10k|Combine)/' \
    --benchmark_format=json > "$results/crypto_ops.json"
  echo "bench: secure aggregation, 5 x 1,000,000 values, 3 of 5 (several minutes)" >&2
  "$build/bench/crypto_bench" --benchmark_filter='BM_SecureAggregation' --benchmark_format=json > "$results/crypto_e2e.json"
  echo "bench: federated rounds per scheme, 10k..10M parameters (about 15 minutes)" >&2
  "$build/bench/fed_bench" > "$results/fed_rounds.json" 2> "$results/fed_rounds.log"
  echo "bench: data-parallel and mixed-size batching (about 12 minutes)" >&2
  "$root/bench/dist_bench.sh" "$build" "$results/dist.jsonl"
  echo "bench: inference server under wrk, batching off/on, JSON/binary, concurrency 1-64 (about 8 minutes)" >&2
  rm -f "$results/serve.jsonl"
  "$root/bench/serve_bench.sh" "$build" "$results/serve.jsonl"
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512ifma|avx512_bf16|amx_bf16|avx2|bmi2|adx)$' | tr '\n' ' ')
{
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\` (\`make bench\`); numbers from the last run."
  echo
  echo "- Machine: $(nproc) vCPU, $cpu; CPU flags: ${flags:-none listed}"
  echo "- $(grep MemTotal /proc/meminfo | awk '{printf "Memory: %.1f GiB", $2/1048576}')"
  echo "- Date: $(date -u +%Y-%m-%d), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- Command: \`bench/run.sh\` (one \`train_bench --benchmark_filter=NAME\` per training row;"
  echo "  \`crypto_bench\` for the crypto tables)"
  echo
  echo "## Training throughput, one process"
  echo
  echo "CNN: examples/fashion_mnist/cnn.toml on 6400 Fashion-MNIST images, batch 128."
  echo "MLP: examples/lending_club/mlp.toml on the 6900-row lending_club training split, batch 128."
  echo "Samples/s counts the training loop only (forward, backward, optimizer step, batch gathering)."
  echo "Peak RSS includes LibTorch itself (~170 MiB)."
  echo
  echo "| benchmark | samples/s | peak RSS (MiB) | threads |"
  echo "|---|---:|---:|---:|"
  python3 - "$results" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/train_*.json")):
    for b in json.load(open(f))["benchmarks"]:
        print(f"| {b['name'].split('/')[1]} | {b['samples_per_s']:.0f} | {b['peak_rss_mib']:.0f} | {b['torch_threads']:.0f} |")
PY
  echo
  echo "## Data-parallel training and mixed-size batching"
  echo
  echo "\`bench/dist_bench.sh\`: whole \`ronghe train\` runs, each in a fresh home. Imaging: examples/imaging/multires.toml"
  echo "(6,000 Fashion-MNIST training images at 28/56/112 px by the seeded rule, CNN 16-32 channels, 2 epochs, batch 64;"
  echo "test set 10,000 images at mixed sizes). MLP: examples/lending_club/mlp.toml (up to 30 epochs, early stopping)."
  echo "Samples/s: training loop only, all ranks together; peak RSS: the largest process; wall: the whole command"
  echo "(data loading, evaluation, artifact). Threads: LibTorch intra-op threads per process."
  echo
  echo "| run | processes | threads/proc | batching | precision | samples/s | peak RSS (MiB) | wall (s) | test acc / ROC-AUC | 28 px | 56 px | 112 px |"
  echo "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
  python3 - "$results/dist.jsonl" "$(nproc)" <<'PY'
import json, sys
cpus = int(sys.argv[2])
for line in open(sys.argv[1]):
    r = json.loads(line)
    a = r["args"]
    p = r["processes"]
    threads = 1 if "threads=1" in a else max(1, cpus // p)
    batching = "pad" if '"pad"' in a or "pad" in r["name"] else (
        "bucket, 200,704 px budget" if "max_elements" in a else "bucket")
    prec = "bf16" if "bf16" in a else "fp32"
    if "accuracy_28px" not in r["test"]:
        batching = "-"  # same-size data: plain shuffled batches
    t = r["test"]
    q = t.get("accuracy", t.get("roc_auc"))
    px = [f"{t[k]:.3f}" if k in t else "" for k in ("accuracy_28px", "accuracy_56px", "accuracy_112px")]
    print(f"| {r['name']} | {p} | {threads} | {batching} | {prec} | {r['samples_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
          f"{r['wall_s']:.0f} | {q:.3f} | " + " | ".join(px) + " |")
PY
  echo
  echo "## Inference server: dynamic batching off vs on, JSON vs binary"
  echo
  echo "\`bench/serve_bench.sh\`: \`ronghe serve --repo examples/serving/repo\` (defaults: one instance per core with 1"
  echo "intra-op thread each, one HTTP event loop per core) in one process, load from \`wrk -t1 -cN\` in another on the same machine"
  echo "(both share the cores), 10 s after a 2 s warm-up, one-row requests: the CNN gets one test image as raw UINT8"
  echo "pixels, the fraud MLP one loan as a raw record (version 1 addressed directly, no A/B split), each as JSON and in"
  echo "the binary tensor extension (outputs binary too). Batching on = the model's config.toml (CNN: max 32 rows; MLP:"
  echo "max 64), work-conserving dispatch; off = \`--max-batch-size 0\`. Rows/batch from \`/metrics\` over the measured"
  echo "run. \"of limit\": requests/s (one row each) over the model's best in-process forward rate on the same cores"
  echo "(\`ronghe perf --in-process\`, first table)."
  echo
  echo "| model | in process, rows/s at batch 1 / 8 / 16 / 32 / 64 |"
  echo "|---|---|"
  python3 - "$results/serve.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "in_process" in r:
        print(f"| {r['model']} | " + " / ".join(f"{x['rows_per_s']:,.0f}" for x in r["in_process"]) + " |")
PY
  echo
  echo "| model | batching | form | connections | requests/s | of limit | p50 ms | p99 ms | rows/batch | non-2xx |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
  python3 - "$results/serve.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
limit = {r["model"]: max(x["rows_per_s"] for x in r["in_process"]) for r in rows if "in_process" in r}
for r in rows:
    if "in_process" in r:
        continue
    x = r["result"]
    form = r.get("form", "json")
    if "rps" not in x:
        print(f"| {r['model']} | {r['batching']} | {form} | {r['concurrency']} | {x.get('error', '?')} | | | | | |")
        continue
    share = f"{100 * x['rps'] / limit[r['model']]:.1f}%" if r["model"] in limit else ""
    print(f"| {r['model']} | {r['batching']} | {form} | {r['concurrency']} | {x['rps']:.0f} | {share} | "
          f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {r['mean_batch_rows']:.1f} | {x['non2xx']} |")
PY
  echo
  echo "## Paillier and threshold Paillier, one core"
  echo
  echo "\`crypto_bench\` (Google Benchmark), keys dealt by \`DealThresholdKeys\` (5 parties, threshold 3)."
  echo
  echo "| operation | bits | time per op |"
  echo "|---|---:|---:|"
  python3 - "$results/crypto_ops.json" <<'PY'
import json, sys
names = {"BM_Encrypt": "encrypt (DJN, 256-bit exponent, fixed-base table)",
         "BM_TextbookEncrypt": "textbook encrypt (r^n mod n^2), reference",
         "BM_Decrypt": "decrypt (CRT, constant-time powm)",
         "BM_PartialDecrypt": "partial decrypt (c^(2 Delta s_i), constant-time powm)",
         "BM_Prove": "share proof, create (single)",
         "BM_Verify": "share proof, verify (single)",
         "BM_VerifyBatch10k": "batch-verify 10,000 shares of one party",
         "BM_Combine": "combine 3 shares"}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    parts = b["name"].split("/")
    t, unit = b["real_time"], b["time_unit"]
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    ms = t * scale
    shown = f"{ms*1000:.0f} us" if ms < 1 else (f"{ms:.2f} ms" if ms < 1000 else f"{ms/1000:.2f} s")
    print(f"| {names.get(parts[0], parts[0])} | {parts[1]} | {shown} |")
PY
  echo
  echo "## End to end: secure aggregation of 5 updates x 1,000,000 float32, 3 of 5"
  echo
  echo "\`BM_SecureAggregation/1000000\`: 2048-bit key, 16-bit precision, 107 values per ciphertext,"
  echo "both cores for every role (in one process, roles one after another)."
  echo
  echo "| role | seconds |"
  echo "|---|---:|"
  python3 - "$results/crypto_e2e.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["benchmarks"][0]
rows = [("participant: encode, pack, encrypt its update", "participant_encrypt_s"),
        ("coordinator: validate and add 5 x ciphertexts", "coordinator_add_s"),
        ("each decrypting party: partial decryptions + batch proof", "decrypting_party_s"),
        ("coordinator: verify one party's batch", "coordinator_verify_s"),
        ("coordinator: combine and decode", "combine_decode_s")]
for label, key in rows:
    print(f"| {label} | {b[key]:.1f} |")
print(f"| whole round, all roles in one process | {b['real_time']:.0f} |")
print()
print(f"Ciphertexts per party: {b['ciphertexts']:.0f}; bytes uploaded per party: {b['bytes_per_party']/1e6:.2f} MB "
      f"(each decrypting party also sends that many shares back).")
PY
  echo
  echo "## Federated rounds per aggregation scheme, 5 parties, 3 of 5"
  echo
  python3 "$root/bench/fed_table.py" "$results/fed_rounds.json"
} > "$out.tmp"
# Keep the hand-written analysis below the generated tables.
if [ -f "$out" ] && grep -q '^## Analysis' "$out"; then
  { echo; sed -n '/^## Analysis/,$p' "$out"; } >> "$out.tmp"
fi
mv "$out.tmp" "$out"
echo "bench: wrote $out" >&2
