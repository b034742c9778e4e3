#!/usr/bin/env bash
# Builds the libFuzzer targets with Debian's clang (address + undefined sanitizers on the whole
# crypto module, the federation's upload decoding, the inference server's request decoding and
# its HTTP request heads)
# and runs each for a bounded time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-60}
build="$root/build-fuzz"
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 1; }
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRONGHE_FUZZ=ON -DRONGHE_WERROR=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fsanitize=fuzzer-no-link -fno-omit-frame-pointer" >/dev/null
cmake --build "$build" --target keyfile_fuzz ciphertext_fuzz request_fuzz upload_fuzz http_head_fuzz
corpus="$build/corpus"
mkdir -p "$corpus/keyfile" "$corpus/ciphertext" "$corpus/request" "$corpus/upload" "$corpus/http_head"
# Seeds: real key files and a real ciphertext, so the fuzzer starts from valid structure.
if [ ! -f "$corpus/keyfile/public.json" ]; then
  keys=$(mktemp -d)
  "$root/build/ronghe/cli/ronghe" keys init --parties 3 --threshold 2 --out "$keys/k" >/dev/null 2>&1 || true
  cp "$keys"/k/*.json "$corpus/keyfile/" 2>/dev/null || echo '{"format":"ronghe.threshold-paillier.public","version":1}' > "$corpus/keyfile/seed.json"
  rm -rf "$keys"
fi
echo "1" > "$corpus/ciphertext/one"
# Seeds: the example request bodies (raw records, raw pixels) and a small FP32 one.
cp "$root"/examples/serving/*.json "$corpus/request/"
echo '{"inputs":[{"name":"input","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}' > "$corpus/request/fp32.json"
# And one in the binary tensor form: an odd first byte, the JSON header's length (2 bytes, little
# endian), the header, then the tensor's bytes (request_fuzz.cc reads it so).
python3 - "$corpus/request/binary.bin" <<'PY'
import struct, sys
head = b'{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}}'
open(sys.argv[1], "wb").write(b"\x01" + struct.pack("<H", len(head)) + head + struct.pack("<2f", 1.5, -2.0))
PY
# Seeds: one honest upload per scheme (none, paillier, paillier-masked), written by the target.
RONGHE_FUZZ_WRITE_SEEDS="$corpus/upload" "$build/fuzz/upload_fuzz" >/dev/null 2>&1 || true
# Seeds: request heads as clients send them.
printf 'POST /v2/models/fraud/infer HTTP/1.1\r\nHost: localhost:8000\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: 140\r\nContent-Length: 400\r\nExpect: 100-continue\r\nConnection: keep-alive' > "$corpus/http_head/infer"
printf 'GET /v2/health/ready HTTP/1.0\r\nConnection: close, keep-alive' > "$corpus/http_head/ready"
for t in keyfile ciphertext request upload http_head; do
  echo "fuzz: ${t}_fuzz for ${secs}s" >&2
  "$build/fuzz/${t}_fuzz" -max_total_time="$secs" -max_len=65536 -timeout=10 "$corpus/$t" 2>&1 | tail -3
done
