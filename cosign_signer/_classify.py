"""Read cosign's stderr: which reference failed, and which typed error it is.

The patterns come from what cosign 2.x and 3.x were seen printing (../shared/COSIGN-FACTS.md and
the integration tests): every error names the reference as ``signing [REF]: …``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cosign_signer.errors import (
    CosignError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnavailableError,
    SigningKeyError,
    TransparencyLogError,
)

__all__ = ["classify", "failing_reference", "summary_line", "tlog_indices"]

_SIGNING_REF = re.compile(r"signing \[([^\]]+)\]")
_TLOG_INDEX = re.compile(r"tlog entry created with index: (\d+)")

_KEY = re.compile(
    r"reading key|decrypt|getting signer|loading key|kms|private key|pkcs11|"
    r"invalid key|no such file or directory|password",
    re.IGNORECASE,
)
_TLOG = re.compile(r"rekor|tlog|transparency log|/api/v1/log|/api/v2/log", re.IGNORECASE)
_AUTH = re.compile(
    r"UNAUTHORIZED|DENIED|authentication required|401 Unauthorized|403 Forbidden|"
    r"status code 401|status code 403",
)
_NOT_FOUND = re.compile(
    r"MANIFEST_UNKNOWN|NAME_UNKNOWN|BLOB_UNKNOWN|entity not found|404 Not Found|status code 404"
)
_UNAVAILABLE = re.compile(
    r"connection refused|connection reset|no such host|i/o timeout|TLS handshake timeout|"
    r"server misbehaving|network is unreachable|context deadline exceeded|broken pipe|"
    r"unexpected EOF|TOOMANYREQUESTS|429 Too Many Requests|status code 429|"
    r"status code 5\d\d|\b5\d\d (?:Internal Server Error|Bad Gateway|Service Unavailable|"
    r"Gateway Timeout)|giving up after \d+ attempt",
    re.IGNORECASE,
)


def failing_reference(stderr: str, references: Sequence[str]) -> str | None:
    """The reference cosign names in ``signing [REF]: …``, if it is one of ``references``.

    ``ALL`` when cosign names the whole batch (cosign 2.x does, ``signing [R1 R2 …]``, when it
    fails before the first reference, e.g. reading the key).
    """
    for match in _SIGNING_REF.finditer(stderr):
        named = match.group(1).split()
        if len(named) == 1 and named[0] in references:
            return named[0]
        if len(named) > 1 and set(named) <= set(references):
            return ALL
    return None


#: ``failing_reference`` result when cosign's error concerns every reference it was given.
ALL = "\x00all"


def summary_line(stderr: str) -> str:
    """The last ``Error:`` line of cosign's stderr (or its last line), without the prefix."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error: "):
            return line.removeprefix("Error: ")
    return lines[-1] if lines else "cosign failed without a message"


def classify(stderr: str) -> tuple[type[CosignError], bool]:
    """The error class for cosign's stderr, and whether the failure is transient."""
    text = summary_line(stderr)
    # The key is read before (2.x) or after (3.x) the registry; its errors name it plainly.
    if _KEY.search(text) and not _UNAVAILABLE.search(text) and not _TLOG.search(text):
        return SigningKeyError, False
    if _TLOG.search(text):
        return TransparencyLogError, bool(_UNAVAILABLE.search(text))
    if _AUTH.search(text):
        return RegistryAuthError, False
    if _NOT_FOUND.search(text):
        return ImageNotFoundError, False
    if _UNAVAILABLE.search(text):
        return RegistryUnavailableError, True
    return CosignError, False


def tlog_indices(stderr: str) -> list[int]:
    """Log indices cosign 2.x reported, in the order it signed."""
    return [int(m.group(1)) for m in _TLOG_INDEX.finditer(stderr)]
