"""Sign release files; each gets a Sigstore bundle beside it (FILE.sigstore.json).

Usage: python examples/sign_blob.py CONFIG.yaml ALIAS FILE [FILE ...]
"""

from __future__ import annotations

import sys

from cosign_signer import ArtifactNotFoundError, CosignError, CosignSignerError, Signer


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    config_path, alias, *files = argv
    failed = 0
    try:
        with Signer.from_config_file(config_path) as signer:
            for file in files:
                try:
                    result = signer.sign_blob(file, key=alias)
                except (ArtifactNotFoundError, CosignError) as exc:
                    failed += 1
                    print(f"FAILED  {file}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                    continue
                print(f"signed  {result.path} sha256:{result.sha256} -> {result.bundle_path}")
    except CosignSignerError as exc:  # configuration, unknown alias, cosign missing
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
