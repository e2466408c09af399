"""``python -m cosign_signer``: the ``cosign-signer`` command line."""

from cosign_signer.cli import main

raise SystemExit(main())
