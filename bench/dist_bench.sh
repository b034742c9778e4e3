#!/usr/bin/env bash
# Data-parallel and mixed-size batching benchmarks: runs `ronghe train` on the imaging example
# (Fashion-MNIST at 28/56/112 px) and the lending_club MLP in several configurations, each in a
# fresh home, and writes one JSON object per run (samples/s of the training loop, peak RSS of the
# largest process, wall time, test metrics) to the file given.
#   bench/dist_bench.sh BUILD_DIR OUT.jsonl [NAME...]   (names: run only these, appending)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$1
out=$2
shift 2
only=" $* "
ronghe="$build/ronghe/cli/ronghe"
data_home=${RONGHE_HOME:-$HOME/.ronghe}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ $# -gt 0 ] || : > "$out"

run() {  # name, then ronghe train arguments
  local name=$1; shift
  [ "$only" = "  " ] || [[ "$only" == *" $name "* ]] || return 0
  local home="$work/$name"
  mkdir -p "$home"
  ln -s "$data_home/data" "$home/data"
  echo "bench: $name" >&2
  local start=$(date +%s.%N)
  "$ronghe" --home "$home" train --progress off "$@" > "$home/out" 2> "$home/err" || { cat "$home/err" >&2; exit 1; }
  local end=$(date +%s.%N)
  python3 - "$name" "$home" "$start" "$end" "$ronghe" "$*" >> "$out" <<'PY'
import json, re, subprocess, sys
name, home, start, end, ronghe, args = sys.argv[1:]
out = open(home + "/out").read()
sps = float(re.search(r"([0-9.]+) samples/s", out).group(1))
rec = json.loads(subprocess.check_output([ronghe, "--home", home, "runs", "show", "1", "--json"]))
test = {m["name"]: m["value"] for m in rec["metrics"] if m["split"] == "test"}
print(json.dumps({"name": name, "args": args, "samples_per_s": sps, "wall_s": float(end) - float(start),
                  "peak_rss_mib": rec["resources"]["peak_rss_bytes"] / 2**20,
                  "processes": rec["resources"]["processes"], "test": test}))
PY
}

img="$root/examples/imaging/multires.toml"
run img_bucket_fp32_1p        --config "$img"
run img_bucket_fp32_1p_1t     --config "$img" --set train.threads=1
run img_bucket_fp32_2p        --config "$img" --nproc 2
run img_budget_fp32_1p        --config "$img" --set train.max_elements=200704
run img_pad_fp32_1p           --config "$img" --set 'train.batching="pad"'
run img_pad_fp32_2p           --config "$img" --set 'train.batching="pad"' --nproc 2
run img_bucket_bf16_1p        --config "$img" --precision bf16
run img_bucket_bf16_2p        --config "$img" --precision bf16 --nproc 2
mlp="$root/examples/lending_club/mlp.toml"
run mlp_fp32_1p               --config "$mlp"
run mlp_fp32_2p               --config "$mlp" --nproc 2
