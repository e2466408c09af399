#!/usr/bin/env bash
# Install the real tools the tests drive: the newest cosign 2.x and 3.x and the distribution
# registry (`docker-registry`), all taken from the Debian archive (trixie + sid) by the ordinary
# apt client with PRIVATE state, so the machine's own apt setup is neither used nor changed.
#
# Cache (outside the clone):  ${COSIGN_SIGNER_CACHE:-$HOME/.cache/cosign-signer}
#   apt/          private sources.list, lists, archives; apt/updated is the refresh stamp,
#                 apt/refresh-failed marks a failed refresh (not retried for an hour)
#   debs/         downloaded .deb files (re-extracted offline if a tree below goes missing)
#   cosign-V/     `dpkg -x` of cosign version V (reused whenever present)
#   docker-registry-V/
#   resolved.env  the versions chosen by the last successful resolution
# Links (inside the clone, git-ignored):
#   .tools/bin/cosign2  .tools/bin/cosign3  .tools/bin/docker-registry  .tools/versions.env
#
# Warm (lists younger than COSIGN_SIGNER_REFRESH_HOURS, default 24, and every binary cached): no
# network at all, about a tenth of a second. The lists are refreshed when stale or when a binary is
# missing; a failed refresh with the binaries still cached only warns, and is not retried for an
# hour (offline machines stay fast).
#
# The mirror is the machine's own Debian mirror, read at run time from the apt configuration;
# COSIGN_SIGNER_DEBIAN_MIRROR overrides it.
set -euo pipefail

log() { printf 'provision: %s\n' "$*" >&2; }
warn() { printf 'provision: WARNING: %s\n' "$*" >&2; }
die() { printf 'provision: ERROR: %s\n' "$*" >&2; exit 1; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${COSIGN_SIGNER_CACHE:-${HOME:?HOME is not set; set COSIGN_SIGNER_CACHE}/.cache/cosign-signer}"
REFRESH_HOURS="${COSIGN_SIGNER_REFRESH_HOURS:-24}"
APT_DIR="$CACHE/apt"
DEB_DIR="$CACHE/debs"
STAMP="$APT_DIR/updated"
FAILED_STAMP="$APT_DIR/refresh-failed"
RESOLVED="$CACHE/resolved.env"
TOOLS="$REPO_ROOT/.tools"
SUITES=(trixie sid)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

for tool in apt-get apt-cache dpkg dpkg-deb flock; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this script needs a Debian-like system"
done

mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$DEB_DIR" "$TOOLS/bin"

# One provision at a time per cache (parallel `make` targets, several clones sharing the cache).
exec 9>"$CACHE/.lock"
flock 9

# --- the machine's Debian mirror ----------------------------------------------------------------

# Print every URI the machine's apt configuration names, one a line, in file order.
apt_uris() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        # deb822: "URIs: a b c" (continuation lines are not used for URIs in practice).
        awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        # one-line style: deb [options] URI suite components...
        awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if (i <= NF) print $i
            }' "$f"
    done
}

# The Debian archive itself: an http(s)/file URI whose path ends in /debian (not -security,
# -debug, -ports...). Falls back to the first http(s) URI that is not a security mirror.
debian_mirror() {
    if [[ -n "${COSIGN_SIGNER_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "${COSIGN_SIGNER_DEBIAN_MIRROR%/}"
        return
    fi
    local uris uri
    uris="$(apt_uris)"
    while IFS= read -r uri; do
        uri="${uri%/}"
        if [[ "$uri" =~ ^(https?|file): && "$uri" =~ /debian$ ]]; then
            printf '%s\n' "$uri"
            return
        fi
    done <<<"$uris"
    while IFS= read -r uri; do
        uri="${uri%/}"
        if [[ "$uri" =~ ^https?: && "$uri" != *security* ]]; then
            printf '%s\n' "$uri"
            return
        fi
    done <<<"$uris"
    return 1
}

# --- private apt ---------------------------------------------------------------------------------

APT_OPTS=(
    -q
    "-oDir::State::Lists=$APT_DIR/lists"
    "-oDir::Etc::SourceList=$APT_DIR/sources.list"
    "-oDir::Etc::SourceParts=/dev/null"
    "-oDir::Cache=$APT_DIR/cache"
    "-oDir::State::status=$APT_DIR/status"
    "-oAcquire::Languages=none"
    "-oAPT::Get::List-Cleanup=true"
)
if [[ "$(id -u)" == 0 ]]; then
    # apt drops to the _apt user for downloads, which can't write into root's cache: stay root.
    APT_OPTS+=("-oAPT::Sandbox::User=root")
fi
: >>"$APT_DIR/status"

write_sources() {
    local mirror="$1" signed_by="" suite
    [[ -r "$KEYRING" ]] && signed_by="[signed-by=$KEYRING] "
    {
        for suite in "${SUITES[@]}"; do
            printf 'deb %s%s %s main\n' "$signed_by" "$mirror" "$suite"
        done
    } >"$APT_DIR/sources.list.new"
    mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
}

refresh_lists() {
    local mirror
    mirror="$(debian_mirror)" || {
        warn "no Debian mirror found in /etc/apt (set COSIGN_SIGNER_DEBIAN_MIRROR)"
        return 1
    }
    write_sources "$mirror"
    log "refreshing package lists for ${SUITES[*]} (private apt state in $APT_DIR)"
    local out
    # apt-get update exits 0 on some fetch failures; -oAPT::Update::Error-Mode=any makes them fail.
    if out="$(apt-get "${APT_OPTS[@]}" -oAPT::Update::Error-Mode=any update 2>&1)"; then
        touch "$STAMP"
        rm -f "$FAILED_STAMP"
        return 0
    fi
    printf '%s\n' "$out" | tail -n 5 >&2
    touch "$FAILED_STAMP"
    return 1
}

# younger_than FILE MINUTES: FILE exists and was modified less than MINUTES ago.
younger_than() {
    [[ -f "$1" ]] && [[ -n "$(find "$1" -mmin "-$2" 2>/dev/null)" ]]
}

lists_fresh() {
    younger_than "$STAMP" "$((REFRESH_HOURS * 60))" || younger_than "$FAILED_STAMP" 60
}

# Newest version of package $1 whose upstream major version is $2 (any major when $2 is empty).
newest_version() {
    local pkg="$1" major="$2" best="" v upstream
    while IFS= read -r v; do
        [[ -n "$v" ]] || continue
        upstream="${v#*:}"
        if [[ -n "$major" && "${upstream%%.*}" != "$major" ]]; then
            continue
        fi
        if [[ -z "$best" ]] || dpkg --compare-versions "$v" gt "$best"; then
            best="$v"
        fi
    done < <(apt-cache "${APT_OPTS[@]}" madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}')
    [[ -n "$best" ]] || return 1
    printf '%s\n' "$best"
}

# --- download and extract -------------------------------------------------------------------------

# Directory name for a package version ("+" and "~" are fine in paths; ":" of an epoch is not nice).
pkg_dir() { printf '%s/%s-%s\n' "$CACHE" "$1" "${2//:/_}"; }

# ensure_pkg PKG VERSION RELATIVE_BINARY: extract PKG=VERSION into the cache unless present.
ensure_pkg() {
    local pkg="$1" version="$2" rel="$3" dest tmp deb
    dest="$(pkg_dir "$pkg" "$version")"
    [[ -x "$dest/$rel" ]] && return 0
    tmp="$(mktemp -d "$CACHE/.download.XXXXXX")"
    # A .deb kept from an earlier run is extracted again without the network.
    deb="$(find "$DEB_DIR" -maxdepth 1 -name "${pkg}_${version#*:}_*.deb" -print -quit)"
    if [[ -n "$deb" ]]; then
        log "extracting cached $(basename "$deb")"
        cp "$deb" "$tmp/"
    else
        log "downloading $pkg=$version"
        (cd "$tmp" && apt-get "${APT_OPTS[@]}" download "$pkg=$version" >/dev/null) || {
            rm -rf "$tmp"
            return 1
        }
    fi
    deb="$(find "$tmp" -maxdepth 1 -name '*.deb' -print -quit)"
    [[ -n "$deb" ]] || { rm -rf "$tmp"; return 1; }
    mkdir "$tmp/root"
    dpkg -x "$deb" "$tmp/root"
    [[ -x "$tmp/root/$rel" ]] || { rm -rf "$tmp"; die "$pkg=$version has no $rel"; }
    mv -f "$deb" "$DEB_DIR/"
    rm -rf "$dest"
    mv "$tmp/root" "$dest"   # atomic: a half-extracted tree is never taken for a cached one
    rm -rf "$tmp"
}

have_all() {
    [[ -x "$(pkg_dir cosign "$1")/usr/bin/cosign" ]] &&
        [[ -x "$(pkg_dir cosign "$2")/usr/bin/cosign" ]] &&
        [[ -x "$(pkg_dir docker-registry "$3")/usr/bin/docker-registry" ]]
}

# --- main --------------------------------------------------------------------------------------

COSIGN2_VERSION=""
COSIGN3_VERSION=""
DOCKER_REGISTRY_VERSION=""
if [[ -f "$RESOLVED" ]]; then
    # shellcheck disable=SC1090
    source "$RESOLVED"
fi

mode=refreshed
if lists_fresh && [[ -n "$COSIGN2_VERSION$COSIGN3_VERSION$DOCKER_REGISTRY_VERSION" ]] &&
    have_all "$COSIGN2_VERSION" "$COSIGN3_VERSION" "$DOCKER_REGISTRY_VERSION"; then
    mode=warm
fi

if [[ "$mode" != warm ]]; then
    if ! refresh_lists; then
        mode="offline: cached lists"
        warn "package list refresh failed; using the lists and binaries already cached"
    fi
    new2="" new3="" newreg=""
    if [[ -d "$APT_DIR/lists" ]] && [[ -f "$APT_DIR/sources.list" ]]; then
        new2="$(newest_version cosign 2)" || new2=""
        new3="$(newest_version cosign 3)" || new3=""
        newreg="$(newest_version docker-registry "")" || newreg=""
    fi
    ok=1
    if [[ -n "$new2" && -n "$new3" && -n "$newreg" ]]; then
        ensure_pkg cosign "$new2" usr/bin/cosign || ok=0
        ensure_pkg cosign "$new3" usr/bin/cosign || ok=0
        ensure_pkg docker-registry "$newreg" usr/bin/docker-registry || ok=0
    else
        ok=0
    fi
    if [[ "$ok" == 1 ]]; then
        COSIGN2_VERSION="$new2" COSIGN3_VERSION="$new3" DOCKER_REGISTRY_VERSION="$newreg"
        printf 'COSIGN2_VERSION=%q\nCOSIGN3_VERSION=%q\nDOCKER_REGISTRY_VERSION=%q\n' \
            "$COSIGN2_VERSION" "$COSIGN3_VERSION" "$DOCKER_REGISTRY_VERSION" >"$RESOLVED.new"
        mv "$RESOLVED.new" "$RESOLVED"
    elif [[ -n "$COSIGN2_VERSION" ]] &&
        have_all "$COSIGN2_VERSION" "$COSIGN3_VERSION" "$DOCKER_REGISTRY_VERSION"; then
        warn "could not resolve/download the newest versions; keeping the cached ones"
    else
        lists_desc="the package lists"
        [[ "$mode" == refreshed ]] || lists_desc="the cached package lists (if any)"
        [[ -n "$new2" ]] || warn "$lists_desc offer no cosign 2.x"
        [[ -n "$new3" ]] || warn "$lists_desc offer no cosign 3.x"
        [[ -n "$newreg" ]] || warn "$lists_desc offer no docker-registry"
        die "cannot provide cosign 2.x, cosign 3.x and docker-registry ($mode)"
    fi
fi

COSIGN2_BIN="$(pkg_dir cosign "$COSIGN2_VERSION")/usr/bin/cosign"
COSIGN3_BIN="$(pkg_dir cosign "$COSIGN3_VERSION")/usr/bin/cosign"
REGISTRY_BIN="$(pkg_dir docker-registry "$DOCKER_REGISTRY_VERSION")/usr/bin/docker-registry"

# Smoke check: each binary starts on this machine.
"$COSIGN2_BIN" version >/dev/null 2>&1 || die "$COSIGN2_BIN does not run"
"$COSIGN3_BIN" version >/dev/null 2>&1 || die "$COSIGN3_BIN does not run"
"$REGISTRY_BIN" --version >/dev/null 2>&1 || die "$REGISTRY_BIN does not run"

ln -sfn "$COSIGN2_BIN" "$TOOLS/bin/cosign2"
ln -sfn "$COSIGN3_BIN" "$TOOLS/bin/cosign3"
ln -sfn "$REGISTRY_BIN" "$TOOLS/bin/docker-registry"
printf 'COSIGN2_VERSION=%s\nCOSIGN3_VERSION=%s\nDOCKER_REGISTRY_VERSION=%s\n' \
    "$COSIGN2_VERSION" "$COSIGN3_VERSION" "$DOCKER_REGISTRY_VERSION" >"$TOOLS/versions.env.new"
mv "$TOOLS/versions.env.new" "$TOOLS/versions.env"

log "cosign2=$COSIGN2_VERSION cosign3=$COSIGN3_VERSION docker-registry=$DOCKER_REGISTRY_VERSION" \
    "($mode)"
