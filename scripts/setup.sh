#!/usr/bin/env bash
# Installs the Debian packages ronghe builds and runs with. Idempotent: packages already
# present are not touched, and apt is not called at all when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache
  libtorch-dev libopenblas0-pthread
  libgmp-dev libssl-dev
  zlib1g-dev libgloo-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libsqlite3-dev libcpp-httplib-dev wrk
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  r-base-core
  ca-certificates
)

# Optional groups, installed only for what needs them:
#   lint     clang and clang-format (`make lint`)
#   browser  Debian's chromium, for the tests labelled `browser` (`make test`; not `make demo`)
for group in "$@"; do
  case "$group" in
    lint) packages+=(clang clang-format) ;;
    browser) packages+=(chromium) ;;
    *) echo "setup: unknown group '$group' (known: lint, browser)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# npm (for `npm pack` of data packages) may come from Debian or from NodeSource; either will do,
# and asking apt for Debian's npm beside NodeSource's nodejs conflicts.
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
