#!/usr/bin/env bash
# Regenerates the committed example model repository examples/serving/repo/ from the training
# configs in examples/serving/train/ (deterministic seeds; about 3 minutes on 2 cores):
#   examples/serving/make-repo.sh [path/to/ronghe]
# The config.toml files of the repository are hand-written and kept; only artifacts are replaced,
# and the cascade's threshold is re-picked by `ronghe calibrate`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
ronghe=${1:-$root/build/ronghe/cli/ronghe}
repo=$here/repo
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RONGHE_HOME=${RONGHE_HOME:-$HOME/.ronghe}
"$ronghe" data fetch fashion-mnist lending_club >/dev/null

train() {  # train CONFIG DEST
  mkdir -p "$(dirname "$2")"
  "$ronghe" train --config "$here/train/$1.toml" --progress off -o "$work/$1.rhm" >&2
  install -m 0644 "$work/$1.rhm" "$2"
}
train fraud-v1 "$repo/fraud/1/model.rhm"
train fraud-v2 "$repo/fraud/2/model.rhm"
train fashion-cnn "$repo/fashion-cnn/1/model.rhm"
train fashion-light "$repo/fashion-light/1/model.rhm"
ls -l "$repo"/*/*/model.rhm
# The cascade's threshold: the lowest escalation that keeps validation accuracy within 0.5 points
# of the full model alone.
"$ronghe" calibrate --repo "$repo" --route fashion --write
