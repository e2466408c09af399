#!/usr/bin/env bash
# A release step with the cosign-signer command line.
#
#   examples/release.sh CONFIG.yaml ALIAS REFS_FILE [FILE ...]
#
# REFS_FILE lists image references, one per line (# comments allowed). The images are planned,
# signed (skipping those already signed with ALIAS; index images with their children) and verified;
# the files are signed with a Sigstore bundle each. The step fails if anything failed.
set -euo pipefail
config=$1 alias=$2 refs=$3
shift 3
signer=(cosign-signer --config "$config")

"${signer[@]}" config check
"${signer[@]}" plan --key "$alias" --recursive - < "$refs"
"${signer[@]}" sign --key "$alias" --skip-signed --recursive --json - < "$refs" > signed.jsonl
"${signer[@]}" verify --key "$alias" - < "$refs"
if [ "$#" -gt 0 ]; then
  "${signer[@]}" sign-blob --key "$alias" "$@"
fi
echo "signing results: signed.jsonl"
