#!/usr/bin/env bash
# The main job: the 5-bank anti-fraud consortium. A coordinator and five bank processes on
# loopback (gRPC, mutual TLS), 3-of-5 threshold Paillier, one bank killed mid-run, then a table
# of each bank alone vs the federated model. Results also go to $RONGHE_HOME/fed-demo.json.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
ronghe="$build/ronghe/cli/ronghe"
home=${RONGHE_HOME:-$HOME/.ronghe}

"$ronghe" fed demo --examples "$root" --json "$home/fed-demo.json"
echo
echo "== recent runs (ronghe runs list)"
"$ronghe" runs list --limit 4
