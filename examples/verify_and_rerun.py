"""Verify images against a key alias, then sign only those that are not signed yet.

A release pipeline can run this again and again: what is signed already is skipped.

Usage: python examples/verify_and_rerun.py CONFIG.yaml ALIAS REF [REF ...]
"""

from __future__ import annotations

import sys

from cosign_signer import BatchSignError, CosignError, CosignSignerError, Signer, VerificationError


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    config_path, alias, *refs = argv
    try:
        with Signer.from_config_file(config_path) as signer:
            for ref in refs:
                try:
                    verified = signer.verify_image(ref, key=alias)
                except VerificationError:
                    print(f"unsigned  {ref}")
                except CosignError as exc:
                    print(f"unknown   {ref}: {type(exc).__name__}: {exc.message}")
                else:
                    print(
                        f"verified  {ref} {verified.digest} ({len(verified.payloads)} signature(s))"
                    )
            try:
                results = signer.sign_images(refs, key=alias, skip_signed=True)
            except BatchSignError as exc:
                results = list(exc.results)
                for ref, error in exc.failures.items():
                    print(f"FAILED    {ref}: {type(error).__name__}: {str(error).splitlines()[0]}")
            for result in results:
                status = "skipped" if result.skipped else "signed"
                print(f"{status:<9} {result.reference} {result.digest}")
            return 0 if len(results) == len(set(refs)) else 1
    except CosignSignerError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
