"""Print the cosign commands signing would run (nothing runs), then optionally a no-upload run.

Usage: python examples/plan.py CONFIG.yaml ALIAS [--no-upload-run] REF [REF ...]

With --no-upload-run the references are then really signed with cosign's --upload=false: the key
and the references are proven to work, and nothing is written to the registry.
"""

from __future__ import annotations

import shlex
import sys

from cosign_signer import BatchSignError, CosignSignerError, Signer


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    config_path, alias, *refs = argv
    dry_run = "--no-upload-run" in refs
    refs = [r for r in refs if r != "--no-upload-run"]
    try:
        signer = Signer.from_config_file(config_path)
        for command in signer.plan(refs, key=alias):
            if command.unresolved:
                print(f"# tags resolved at run time: {' '.join(command.unresolved)}")
            print(f"# environment: {' '.join(command.env_names)}")
            print(shlex.join(command.argv))
        if dry_run:
            for result in signer.sign_images(refs, key=alias, upload=False):
                print(f"would sign {result.reference} -> {result.digest}")
    except BatchSignError as exc:
        for ref, error in exc.failures.items():
            print(f"FAILED {ref}: {type(error).__name__}: {str(error).splitlines()[0]}")
        return 1
    except CosignSignerError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
