#!/usr/bin/env bash
# The edge path on this machine (docs/benchmarks.md): trains the grid teacher, distils the
# student, exports it fp32 and int8, then on one core (taskset -c 0) the p50/p99 of one forecast
# for the teacher and student in LibTorch and the student in the edge runtime; the ronghe-edge
# binary's size and its resident memory while serving 2,000 requests.
#   bench/edge_bench.sh BUILD
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$1" && pwd)
ronghe="$build/ronghe/cli/ronghe"
edge="$build/ronghe/cli/ronghe-edge"
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
export RONGHE_HOME="$work/home"
mkdir -p "$RONGHE_HOME"
ln -s "${DATA_HOME:-$HOME/.ronghe}/data" "$RONGHE_HOME/data"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) cores; flags:" \
  "$(grep -o -w -E 'avx2|fma|avx512f|avx512_bf16|avx512ifma|avx512_vnni|sha_ni' /proc/cpuinfo | sort -u | xargs)"
"$ronghe" train --config "$root/examples/grid/teacher.toml" --progress off >"$work/teacher.log" 2>&1
teacher="$RONGHE_HOME/runs/1/model.rhm"
"$ronghe" distill --teacher "$teacher" --config "$root/examples/grid/student.toml" \
  --set 'train.progress="off"' 2>/dev/null | grep -A3 '^model '
student="$RONGHE_HOME/runs/2/model.rhm"
for p in fp32 int8; do
  "$ronghe" export --edge -m "$student" -o "$work/student-$p.rhe" --precision "$p" | grep -E 'wrote|edge'
done
taskset -c 0 "$build/bench/edge_bench" "$RONGHE_HOME" "$teacher" "$student" \
  "$work/student-fp32.rhe" "$work/student-int8.rhe"
echo "ronghe-edge binary: $(stat -c %s "$edge") bytes (debug information apart: $(stat -c %s "$edge.debug") bytes)"
echo "ronghe-edge links: $(ldd "$edge" | awk '{print $1}' | grep -v vdso | xargs)"
"$edge" serve -m "$work/student-int8.rhe" --http 0 --socket "$work/edge.sock" >"$work/serve.log" &
pid=$!
for _ in $(seq 50); do [ -S "$work/edge.sock" ] && break; sleep 0.1; done
python3 - "$work/edge.sock" <<'PY'
import json, socket, sys
rows = [[2500 + 10 * t, 45] for t in range(24)]
body = json.dumps({"inputs": rows}).encode()
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
req = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
for _ in range(2000):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf: buf += s.recv(4096)
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(rest) < n: rest += s.recv(4096)
PY
echo "ronghe-edge resident memory serving the int8 student after 2,000 requests:" \
  "$(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status) (peak $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status))"
