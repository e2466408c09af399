#!/usr/bin/env bash
# Build Rekor v2 (rekor-tiles, POSIX storage) and Rekor v1 (rekor-server, rekor-cli, Trillian's
# log server, log signer and createtree) from Debian sid's golang-*-dev packages with Debian's own
# Go toolchain, in GOPATH mode, with no network but the Debian archive. Also extracts Trillian's
# MySQL schema from Debian's trillian source package.
#
# Usage: build.sh WORK_DIR OUT_DIR
#   WORK_DIR  scratch space (private apt state, .debs, unpacked GOPATH, Go build cache)
#   OUT_DIR   receives bin/{rekor-tiles-posix,rekor-server,rekor-cli,trillian_log_server,
#             trillian_log_signer,createtree}, trillian-storage.sql and versions.txt
# Called by scripts/provision-rekor.sh, which caches OUT_DIR; not meant to be run every time.
# REKOR_PKGS=saved|recursive picks the package list (default: saved, then recursive on failure).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:?usage: build.sh WORK_DIR OUT_DIR}
OUT=${2:?usage: build.sh WORK_DIR OUT_DIR}
log() { echo "provision-rekor: $*" >&2; }
die() { echo "provision-rekor: error: $*" >&2; exit 1; }
ts() { date +%s.%N; }
el() { log "$(awk -v a="$2" -v b="$(ts)" -v w="$1" 'BEGIN { printf "%s took %.1f s", w, b - a }')"; }

# Private apt state naming Debian trixie and sid (binaries and sources). The mirror is read from
# this machine's own apt configuration at run time, never written down.
A="$W/apt"
mkdir -p "$A/lists/partial" "$W/debs" "$W/overlay" "$W/src" "$OUT/bin"
mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
[ -n "$mirror" ] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring is missing (apt-get install debian-archive-keyring)"
for kind in deb deb-src; do for suite in trixie sid; do
  echo "$kind [signed-by=$keyring] $mirror $suite main"
done; done > "$A/sources.list"
APT=(-oDir::State::Lists="$A/lists" -oDir::Etc::SourceList="$A/sources.list"
     -oDir::Etc::SourceParts=/dev/null -oDir::Cache="$A/cache" -oAPT::Sandbox::User=root)
mkdir -p "$A/cache/archives/partial"
t=$(ts)
apt-get "${APT[@]}" update -qq >"$W/apt-update.log" 2>&1 \
  || die "apt-get update of the private trixie+sid state failed: $(tail -3 "$W/apt-update.log")"
el "apt-get update (trixie+sid)" "$t"

# $1 = saved|recursive: writes $W/pkgs.txt
package_list() {
  if [ "$1" = recursive ]; then
    apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances --no-pre-depends \
      golang-github-sigstore-rekor-tiles-dev golang-github-sigstore-rekor-dev \
      golang-github-google-trillian-dev golang-gocloud-dev golang-github-redis-go-redis-dev \
      | grep -v '^ ' | grep '^golang-' | grep -v -x -e golang-any -e golang-go -e golang-src \
      | sort -u > "$W/pkgs.txt"
  else
    sort -u "$HERE/pkgs-v2.txt" "$HERE/pkgs-v1.txt" > "$W/pkgs.txt"
  fi
}

# $1 = saved|recursive. Called as `if ! build ...`, where set -e does not act: every step that
# can fail says `|| return 1` (or `|| exit 1` inside the subshell) itself.
build() {
  package_list "$1" || { log "could not compute the $1 package list"; return 1; }
  log "package list ($1): $(wc -l < "$W/pkgs.txt") packages"
  local t root gopath goroot p d
  t=$(ts)
  local missing=()
  while read -r p; do
    compgen -G "$W/debs/${p}_*.deb" >/dev/null || missing+=("$p")
  done < "$W/pkgs.txt"
  if [ ${#missing[@]} -gt 0 ]; then
    (cd "$W/debs" && printf '%s\n' "${missing[@]}" \
      | xargs -n 40 -P 6 apt-get "${APT[@]}" download -q >"$W/download.log" 2>&1) \
      || { log "download failed: $(grep -E '^E:' "$W/download.log" | head -3)"; return 1; }
  fi
  el "download of ${#missing[@]} .debs" "$t"
  t=$(ts)
  root="$W/root"; rm -rf "$root"; mkdir -p "$root"; : > "$W/versions.txt"
  while read -r p; do
    d=$(printf '%s\n' "$W"/debs/"${p}"_*.deb | sort -V | tail -1)
    dpkg -x "$d" "$root" || { log "dpkg -x $d failed"; return 1; }
    dpkg-deb --show --showformat='${Package} ${Version}\n' "$d" >> "$W/versions.txt"
  done < "$W/pkgs.txt"
  el "unpacking" "$t"
  goroot=$(find "$root/usr/lib" -maxdepth 1 -name 'go-1.*' -type d | sort -V | tail -1)
  [ -n "$goroot" ] && [ -x "$goroot/bin/go" ] \
    || { log "no Go toolchain (golang-1.NN-go) in the package list"; return 1; }
  gopath="$root/usr/share/gocode"
  (
    export GOPATH="$gopath" GOROOT="$goroot" GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off GOFLAGS= \
      CGO_ENABLED=0 GOCACHE="$W/gocache" PATH="$goroot/bin:$PATH"
    log "$(go version)"
    t=$(ts)
    go build -trimpath -ldflags=-s -o "$OUT/bin/rekor-tiles-posix" \
      github.com/sigstore/rekor-tiles/cmd/rekor-server/posix || exit 1
    el "build of Rekor v2 (rekor-tiles posix)" "$t"
    python3 "$HERE/make_overlay.py" "$gopath/src" "$W/overlay" || exit 1
    t=$(ts)
    go build -trimpath -ldflags=-s -overlay "$W/overlay/overlay.json" -o "$OUT/bin/" \
      github.com/google/trillian/cmd/trillian_log_server \
      github.com/google/trillian/cmd/trillian_log_signer \
      github.com/google/trillian/cmd/createtree \
      github.com/sigstore/rekor/cmd/rekor-server \
      github.com/sigstore/rekor/cmd/rekor-cli || exit 1
    el "build of Rekor v1 + Trillian" "$t"
  ) > "$W/build-$1.log" 2>&1
  local rc=$?
  cat "$W/build-$1.log" >&2
  [ $rc -eq 0 ] || { log "build failed with the $1 package list (log: $W/build-$1.log)"; return 1; }
}

mode=${REKOR_PKGS:-saved}
if ! build "$mode"; then
  [ "$mode" = saved ] || die "build failed; logs in $W"
  log "retrying with the recursive dependency list (Debian sid moved on?)"
  build recursive || die "build failed with the recursive list too; logs in $W"
fi
cp "$W/versions.txt" "$OUT/versions.txt"

# Trillian's MySQL schema is not in the -dev package: take it from Debian's trillian source package.
t=$(ts)
# Only the upstream tarball is needed: apt-get may fail on the .dsc (seen: 404 from the mirror)
# after the .orig.tar.* has arrived, so its exit status alone does not decide.
(cd "$W/src" && apt-get "${APT[@]}" source --download-only -qq trillian >"$W/source.log" 2>&1) || true
orig=$(find "$W/src" -maxdepth 1 -name 'trillian_*.orig.tar.*' | sort -V | tail -1)
[ -n "$orig" ] || die "apt-get source trillian brought no trillian_*.orig.tar.*: $(tail -3 "$W/source.log")"
tar -xOf "$orig" --wildcards '*/storage/mysql/schema/storage.sql' > "$OUT/trillian-storage.sql"
grep -q 'CREATE TABLE' "$OUT/trillian-storage.sql" || die "the schema taken from $orig has no CREATE TABLE"
el "Trillian schema" "$t"
