#!/usr/bin/env bash
# `ronghe hub deploy` to a serving answer: a hub with the example fraud model published and
# certified, a repository that requires certification served with --watch 0.2, then ROUNDS
# (default 5) times: deploy the next version and time from the deploy's start to the first
# answer of that version (`model_version` in the reply). Prints each round's seconds and the
# median.
#   bench/hub_deploy.sh BUILD [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$1
rounds=${2:-5}
ronghe="$build/ronghe/cli/ronghe"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export RONGHE_HOME="$work/home"
mkdir -p "$RONGHE_HOME"
ln -s "${DATA_HOME:-$HOME/.ronghe}/data" "$RONGHE_HOME/data"
model="$root/examples/serving/repo/fraud/1/model.rhm"
"$ronghe" hub keygen --out "$work/keys" >/dev/null
"$ronghe" hub init --hub "$work/hub" --root-key "$work/keys/hub.key" >/dev/null
printf '# Fraud\nLicense: Apache-2.0\n' > "$work/card.md"
mkdir -p "$work/repo"
cp "$work/hub/metadata/1.root.json" "$work/repo/hub-root.json"
printf '[policy]\nrequire = "certified"\ntrusted_roots = ["hub-root.json"]\n' > "$work/repo/repository.toml"
publish() {
  "$ronghe" hub publish --hub "$work/hub" --model "$model" --name fraud --version "$1" \
    --card "$work/card.md" --key "$work/keys/hub.key" >/dev/null
  "$ronghe" hub certify --hub "$work/hub" "fraud@$1" --key "$work/keys/hub.key" >/dev/null
}
publish 1.0.0
"$ronghe" hub deploy --hub "$work/hub" fraud@1.0.0 --repo "$work/repo" >/dev/null
port=$(( 20000 + RANDOM % 20000 ))
"$ronghe" serve --repo "$work/repo" --host 127.0.0.1 --http "$port" --watch 0.2 \
  > "$work/serve.out" 2> "$work/serve.err" &
for _ in $(seq 1 300); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
body="$root/examples/serving/fraud.json"
times=()
for round in $(seq 1 "$rounds"); do
  publish "1.$round.0"
  start=$(date +%s.%N)
  "$ronghe" hub deploy --hub "$work/hub" "fraud@1.$round.0" --repo "$work/repo" >/dev/null
  want=$((round + 1))
  until curl -sf -X POST -H 'Content-Type: application/json' --data @"$body" \
      "http://127.0.0.1:$port/v2/models/fraud/infer" | grep -q "\"model_version\":\"$want\""; do
    sleep 0.02
  done
  end=$(date +%s.%N)
  t=$(echo "$end - $start" | bc -l)
  times+=("$t")
  printf 'round %d: deploy to answer %.3f s\n' "$round" "$t"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.3f s over %d rounds\n", a[int((NR+1)/2)], NR}'
