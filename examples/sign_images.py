"""Sign a list of image references by key alias, as a release pipeline would.

Usage: python examples/sign_images.py CONFIG.yaml ALIAS REF [REF ...]
"""

from __future__ import annotations

import logging
import sys

from cosign_signer import BatchSignError, CosignSignerError, Signer


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    config_path, alias, *refs = argv
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    try:
        signer = Signer.from_config_file(config_path)
        results = signer.sign_images(refs, key=alias)
    except BatchSignError as exc:
        for result in exc.results:
            print(f"signed  {result.reference} -> {result.digest}")
        for ref, error in exc.failures.items():
            print(f"FAILED  {ref}: {type(error).__name__}: {str(error).splitlines()[0]}")
        return 1
    except CosignSignerError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(f"signed  {result.reference} -> {result.digest} (key {result.key})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
