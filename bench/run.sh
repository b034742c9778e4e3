#!/usr/bin/env bash
# Runs every benchmark in its own process (so peak RSS belongs to one configuration) and writes
# docs/benchmarks.md with the machine, the command and the numbers.
#   bench/run.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
bin="$build/bench/train_bench"
out="$root/docs/benchmarks.md"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

names=$("$bin" --benchmark_list_tests)
for n in $names; do
  echo "bench: $n" >&2
  "$bin" --benchmark_filter="^${n}\$" --benchmark_format=json > "$tmp/$(echo "$n" | tr '/' '_').json"
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512_bf16|amx_bf16|avx2)$' | tr '\n' ' ')
{
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\` (\`make bench\`); numbers from the last run. Each row is one"
  echo "process, so peak RSS is that configuration's own (it includes LibTorch itself, ~170 MiB)."
  echo
  echo "- Machine: $(nproc) vCPU, $cpu; CPU flags: ${flags:-none listed}"
  echo "- $(grep MemTotal /proc/meminfo | awk '{printf "Memory: %.1f GiB", $2/1048576}')"
  echo "- Date: $(date -u +%Y-%m-%d), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- Command: \`bench/run.sh\` (one \`train_bench --benchmark_filter=NAME\` per row)"
  echo
  echo "## Training throughput, one process"
  echo
  echo "CNN: examples/fashion_mnist/cnn.toml on 6400 Fashion-MNIST images, batch 128."
  echo "MLP: examples/lending_club/mlp.toml on the 6900-row lending_club training split, batch 128."
  echo "Samples/s counts the training loop only (forward, backward, optimizer step, batch gathering)."
  echo
  echo "| benchmark | samples/s | peak RSS (MiB) | threads |"
  echo "|---|---:|---:|---:|"
  for f in "$tmp"/*.json; do
    python3 - "$f" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for b in d["benchmarks"]:
    print(f"| {b['name'].split('/')[1]} | {b['samples_per_s']:.0f} | {b['peak_rss_mib']:.0f} | {b['torch_threads']:.0f} |")
PY
  done
} > "$out.tmp"
# Keep the hand-written analysis below the generated table.
if [ -f "$out" ] && grep -q '^## Analysis' "$out"; then
  { echo; sed -n '/^## Analysis/,$p' "$out"; } >> "$out.tmp"
fi
mv "$out.tmp" "$out"
echo "bench: wrote $out" >&2
