#!/usr/bin/env bash
# The main job until the federated runtime lands: train the Fashion-MNIST CNN and the
# lending_club MLP from examples/ and print their test metrics.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
ronghe="$build/ronghe/cli/ronghe"

echo "== Fashion-MNIST CNN (examples/fashion_mnist/cnn.toml)"
"$ronghe" train --config "$root/examples/fashion_mnist/cnn.toml"
echo
echo "== lending_club MLP (examples/lending_club/mlp.toml)"
"$ronghe" train --config "$root/examples/lending_club/mlp.toml"
echo
echo "== recent runs (ronghe runs list)"
"$ronghe" runs list --limit 5
