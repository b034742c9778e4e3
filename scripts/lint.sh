#!/usr/bin/env bash
# `make lint`: the checks that keep the code as it is meant to be.
#   1. clang-format --dry-run --Werror on every C++ file of ours (.clang-format: Google, 100 columns).
#   2. clang's thread-safety analysis (-Wthread-safety -Werror) on every translation unit of the
#      libraries, the binary and the benchmarks (tests hold no annotated state), with the flags
#      CMake gives it (compile_commands.json of BUILD), syntax only: no objects, so it costs a
#      fraction of a build; in a built Ninja tree only the TUs that include base/mutex.h. Mutex-guarded state says GUARDED_BY (ronghe/base/mutex.h); a read or
#      write of it without its lock fails here.
# Usage: scripts/lint.sh [BUILD]   (BUILD must be configured, with its generated protobuf headers)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
jobs=$(nproc)

files=$(git ls-files -co --exclude-standard -- 'ronghe/*.h' 'ronghe/*.cc' 'bench/*.cc' 'fuzz/*.cc' | sort)
echo "lint: clang-format on $(echo "$files" | wc -l) files"
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files

db="$build/compile_commands.json"
[ -f "$db" ] || { echo "lint: $db missing; configure the build first (make build)" >&2; exit 2; }
# Our translation units (not the generated protocol code), each as: directory <TAB> command.
# A TU that includes no annotated header (base/mutex.h, directly or not) has nothing to check:
# with a built Ninja tree its header dependencies say which; otherwise every TU is checked.
ninja -C "$build" -t deps > "$build/lint-deps.txt" 2>/dev/null || : > "$build/lint-deps.txt"
python3 - "$db" "$PWD" "$build/lint-deps.txt" > "$build/lint-commands.txt" <<'PY'
import json, shlex, sys
db, root, deps_file = sys.argv[1], sys.argv[2], sys.argv[3]
deps, obj = {}, None
for line in open(deps_file):
    if line and not line[0].isspace() and ": #deps" in line:
        obj = line.split(":")[0]
        deps[obj] = False
    elif obj and line.strip().endswith("ronghe/base/mutex.h"):
        deps[obj] = True
for e in json.load(open(db)):
    f = e["file"]
    if not f.startswith(root + "/ronghe/") and not f.startswith(root + "/bench/"):
        continue
    if f.endswith("_test.cc") or f.endswith("/test_util.cc"):
        continue
    args = shlex.split(e["command"])
    if "-o" in args and not deps.get(args[args.index("-o") + 1], True):
        continue
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            continue
        if a in ("-c", "-MD") or a.startswith("-g"):
            continue
        out.append(a)
    # ccache is the launcher in some builds: drop it, and the compiler, for clang++.
    while out and not out[0].startswith("-"):
        out.pop(0)
    print(e["directory"] + "\t" + shlex.join(["clang++", "-fsyntax-only", "-Wthread-safety", "-Werror"] + out))
PY
n=$(wc -l < "$build/lint-commands.txt")
echo "lint: clang -Wthread-safety -Werror on $n translation units ($jobs at a time)"
fail=0
# shellcheck disable=SC2016
tr '\n' '\0' < "$build/lint-commands.txt" |
  xargs -0 -P "$jobs" -n 1 bash -c 'cd "${0%%	*}" && eval "${0#*	}"' || fail=1
if [ "$fail" -ne 0 ]; then
  echo "lint: FAILED" >&2
  exit 1
fi
echo "lint: ok"
