#!/usr/bin/env bash
# Provision a real Rekor transparency log, v1 and v2, for the test suite (tests/infra/rekor.py).
#
#   scripts/provision-rekor.sh
#
# - Builds Rekor v2 (rekor-tiles posix) and Rekor v1 (rekor-server, rekor-cli, trillian_log_server,
#   trillian_log_signer, createtree) from Debian sid's Go packages with Debian's Go toolchain
#   (scripts/rekor/build.sh, fix-ups in scripts/rekor/make_overlay.py), and extracts Trillian's
#   MySQL schema. A cold build takes a few minutes on 2 cores.
# - Caches the result in ${COSIGN_SIGNER_CACHE:-$HOME/.cache/cosign-signer}/rekor-<key>/, where
#   <key> hashes the build inputs (build script, fix-ups, package lists, architecture). With the
#   cache in place this takes about a second and uses no network.
# - Installs MariaDB from the machine's own Debian suite if it is missing (its service is not
#   used: the fixtures start mariadbd on a private datadir and port).
# - Links the results into the git-ignored .tools/rekor/: bin/ (the six binaries),
#   trillian-storage.sql and versions.txt (the Debian package versions the build used).
# Builds for older keys are left in the cache (~240 MB each); remove unused rekor-*/ by hand.
# A failed build keeps its work files in the cache's rekor-work/ (REKOR_KEEP_WORK=1 keeps them
# after a successful one too).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE="$REPO/scripts/rekor"
CACHE=${COSIGN_SIGNER_CACHE:-$HOME/.cache/cosign-signer}
BINARIES=(rekor-tiles-posix rekor-server rekor-cli trillian_log_server trillian_log_signer createtree)
log() { echo "provision-rekor: $*" >&2; }
die() { echo "provision-rekor: error: $*" >&2; exit 1; }

key=$( { dpkg --print-architecture; cat "$HERE/build.sh" "$HERE/make_overlay.py" \
         "$HERE/pkgs-v1.txt" "$HERE/pkgs-v2.txt"; } | sha256sum | cut -c1-16)
DEST="$CACHE/rekor-$key"

complete() {
  [ -f "$DEST/.complete" ] && [ -s "$DEST/trillian-storage.sql" ] || return 1
  local b; for b in "${BINARIES[@]}"; do [ -x "$DEST/bin/$b" ] || return 1; done
}

# 1. Rekor binaries and Trillian schema, built once per key.
mkdir -p "$CACHE"
if ! complete; then
  exec 9>"$CACHE/rekor.lock"
  flock 9    # another provisioning run may be building the same key
  if ! complete; then
    log "building Rekor v1 + v2 into $DEST (a few minutes, Debian archive only)"
    start=$(date +%s)
    work="$CACHE/rekor-work"
    tmp="$DEST.tmp"
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    "$HERE/build.sh" "$work" "$tmp" || die "building Rekor failed; the work files are kept in $work"
    for b in "${BINARIES[@]}"; do [ -x "$tmp/bin/$b" ] || die "the build did not produce $b"; done
    touch "$tmp/.complete"
    rm -rf "$DEST"
    mv "$tmp" "$DEST"
    trap - EXIT
    [ -n "${REKOR_KEEP_WORK:-}" ] || rm -rf "$work"
    log "built in $(( $(date +%s) - start )) s"
  fi
  flock -u 9
fi

# 2. MariaDB from this machine's own suite (only its binaries are used).
have_mariadb() {
  local t; for t in mariadbd mariadb-install-db mariadb mariadb-admin; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || return 1
  done
}
if ! have_mariadb; then
  log "installing mariadb-server (no recommends) with apt-get"
  install_log=$(mktemp)
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mariadb-server \
      >"$install_log" 2>&1
  }
  if ! apt_install; then
    log "install failed; running apt-get update and trying again"
    apt-get update -qq >>"$install_log" 2>&1 || true
    apt_install || die "apt-get install mariadb-server failed: $(tail -5 "$install_log")"
  fi
  rm -f "$install_log"
  have_mariadb || die "mariadb-server is installed but mariadbd/mariadb-install-db/mariadb/mariadb-admin are not all there"
fi

# 3. Links into the git-ignored .tools/rekor/.
T="$REPO/.tools/rekor"
mkdir -p "$T"
ln -sfn "$DEST/bin" "$T/bin"
ln -sfn "$DEST/trillian-storage.sql" "$T/trillian-storage.sql"
ln -sfn "$DEST/versions.txt" "$T/versions.txt"
log "ready: $T/bin ($(cd "$T/bin" && echo *)) and $T/trillian-storage.sql"
