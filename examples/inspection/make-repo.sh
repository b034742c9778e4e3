#!/usr/bin/env bash
# Regenerates the committed inspection model examples/inspection/repo/parts/1/model.rhm from
# examples/inspection/train/parts.toml (deterministic seeds; about a minute on 2 cores):
#   examples/inspection/make-repo.sh [path/to/ronghe]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
ronghe=${1:-$root/build/ronghe/cli/ronghe}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RONGHE_HOME=${RONGHE_HOME:-$HOME/.ronghe}
"$ronghe" data fetch fashion-mnist >/dev/null
mkdir -p "$here/repo/parts/1"
"$ronghe" train --config "$here/train/parts.toml" --progress off -o "$work/parts.rhm" >&2
install -m 0644 "$work/parts.rhm" "$here/repo/parts/1/model.rhm"
ls -l "$here/repo/parts/1/model.rhm"
