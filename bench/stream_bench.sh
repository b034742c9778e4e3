#!/usr/bin/env bash
# Streaming inspection on this machine (docs/benchmarks.md):
#   1. one line, CAMERAS (default 200) replayed 28x28 cameras at 5 fps for SECONDS (default 30):
#      frames in/decided/dropped and the p99 capture-to-decision latency;
#   2. real 768x576 video (vtest.avi) cameras at 5 fps, 10, 20, ... up to MAX_VIDEO (default 80)
#      for 20 s each: frames dropped and p99 per count, and the largest count with no drop;
#   3. the full `stream demo` (4 lines x 50 cameras): seconds from the K-th label to every line.
#   bench/stream_bench.sh BUILD [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$1
out=${2:-$(mktemp -d)}
mkdir -p "$out"
ronghe="$build/ronghe/cli/ronghe"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RONGHE_HOME="$work/home"
mkdir -p "$RONGHE_HOME"
ln -s "${DATA_HOME:-$HOME/.ronghe}/data" "$RONGHE_HOME/data"
cameras=${CAMERAS:-200}
secs=${SECONDS_PER_RUN:-30}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; flags:" \
  "$(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|avx512ifma|sha_ni' /proc/cpuinfo | sort -u | xargs)"

cat > "$work/replay.toml" <<TOML
[line]
name = "bench-replay"
model = "parts"
repo = "$root/examples/inspection/repo"
[batching]
max_batch = 64
max_wait_ms = 20
[cameras.cam]
kind = "images"
dataset = "fashion-mnist"
count = $cameras
fps = 5
TOML
"$ronghe" stream run --config "$work/replay.toml" --duration "$secs" --json "$out/replay.json" >/dev/null
python3 - "$out/replay.json" "$cameras" "$secs" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"replay: {sys.argv[2]} cameras x 5 fps for {sys.argv[3]} s: in {j['frames_in']}, decided "
      f"{j['frames_decided']}, dropped {j['frames_dropped']}, {j['frames_decided']/float(sys.argv[3]):.0f} "
      f"frames/s, p99 {j['p99_ms']:.1f} ms, {j['batches']} batches ({j['mixed_batches']} mixing cameras)")
PY

best=0
for n in $(seq 10 10 "${MAX_VIDEO:-80}"); do
  cat > "$work/video.toml" <<TOML
[line]
name = "bench-video"
model = "parts"
repo = "$root/examples/inspection/repo"
[batching]
max_batch = 64
max_wait_ms = 20
capture_threads = 2
[cameras.street]
kind = "video"
path = "$RONGHE_HOME/data/opencv/vtest.avi"
count = $n
fps = 5
TOML
  "$ronghe" stream run --config "$work/video.toml" --duration 20 --json "$out/video-$n.json" >/dev/null
  read -r dropped p99 decided <<<"$(python3 -c "import json; j=json.load(open('$out/video-$n.json')); print(j['frames_dropped'], round(j['p99_ms'],1), j['frames_decided'])")"
  echo "video: $n streams of 768x576 at 5 fps: decided $decided, dropped $dropped, p99 $p99 ms"
  if [ "$dropped" = 0 ]; then best=$n; else break; fi
done
echo "video: largest count without a drop: $best"

"$ronghe" stream demo --json "$out/demo.json" --work "$work/demo" | tail -8
