"""Reading cosign's stderr: lines as cosign 2.5 and 3.1 print them (see COSIGN-FACTS.md)."""

from __future__ import annotations

import pytest

from cosign_signer import (
    CosignError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnavailableError,
    SigningKeyError,
    TransparencyLogError,
)
from cosign_signer._classify import classify, failing_reference, tlog_indices

R = "127.0.0.1:5000/app@sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("line", "kind", "transient"),
    [
        (
            f"signing [{R}]: getting signer: reading key: decrypt: encrypted: decryption failed",
            SigningKeyError,
            False,
        ),
        (
            f"signing [{R}]: getting signer: reading key: open /k: no such file or directory",
            SigningKeyError,
            False,
        ),
        (
            f"signing [{R}]: accessing entity: GET http://x/v2/: UNAUTHORIZED: authentication required; [map[]]",
            RegistryAuthError,
            False,
        ),
        (
            f"signing [{R}]: accessing entity: entity not found in registry",
            ImageNotFoundError,
            False,
        ),
        (
            f"signing [{R}]: HEAD http://x/v2/app/manifests/sha256:ab: unexpected status code 404 Not Found (HEAD responses have no body, use GET for details)",
            ImageNotFoundError,
            False,
        ),
        (
            f'signing [{R}]: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            RegistryUnavailableError,
            True,
        ),
        (
            f"signing [{R}]: PUT http://x: unexpected status code 503 Service Unavailable",
            RegistryUnavailableError,
            True,
        ),
        (
            f"signing [{R}]: POST http://r/api/v1/log/entries giving up after 4 attempt(s): connection refused",
            TransparencyLogError,
            True,
        ),
        (f"signing [{R}]: something new", CosignError, False),
    ],
)
def test_classify(line: str, kind: type[CosignError], transient: bool) -> None:
    stderr = f"Pushing signature to: x\nError: {line}\nerror during command execution: {line}\n"
    assert classify(stderr) == (kind, transient)
    assert failing_reference(stderr, ["other", R]) == R


def test_tlog_indices_in_order() -> None:
    assert tlog_indices(
        "tlog entry created with index: 7\nx\ntlog entry created with index: 9\n"
    ) == [7, 9]
