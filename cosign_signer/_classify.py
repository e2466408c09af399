"""Read cosign's stderr: which reference failed, and which typed error it is.

The patterns come from what cosign 2.x and 3.x were seen printing (../shared/COSIGN-FACTS.md and
the integration tests): every error names the reference as ``signing [REF]: …``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from cosign_signer.command import redact
from cosign_signer.errors import (
    CosignError,
    CosignTimeoutError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnavailableError,
    SigningKeyError,
    TransparencyLogError,
)

__all__ = [
    "classify",
    "failing_reference",
    "failure",
    "stopped_at",
    "summary_line",
    "tlog_indices",
]

_SIGNING_REF = re.compile(r"signing \[([^\]]+)\]")
_TLOG_INDEX = re.compile(r"tlog entry created with index: (\d+)")

# Words only a key problem produces: they win over registry words (a KMS that answers 403 is a
# key problem).
_KEY = re.compile(
    r"reading key|decrypt|getting signer|loading key|private key|pkcs11|invalid key",
    re.IGNORECASE,
)
# Words a key problem may produce but a registry's own error message may hold too (Docker Hub
# answers 401 "UNAUTHORIZED: incorrect username or password"): they count only when no registry
# pattern matched.
_KEY_WEAK = re.compile(r"kms|no such file or directory|password", re.IGNORECASE)
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
    r"unexpected EOF|timeout awaiting response headers|Client\.Timeout exceeded|"
    r"429 Too Many Requests|status code 429|"
    r"status code 5\d\d|\b5\d\d (?:Internal Server Error|Bad Gateway|Service Unavailable|"
    r"Gateway Timeout)|giving up after \d+ attempt",
    re.IGNORECASE,
)
# A registry's JSON error body replaces the status in cosign's message ("POST URL: CODE: message"):
# these codes (distribution's errcode) are the 429 and 5xx ones. Case matters: they are codes.
_UNAVAILABLE_CODES = re.compile(r"\b(?:TOOMANYREQUESTS|UNAVAILABLE|UNKNOWN): ")


def failing_reference(stderr: str, references: Sequence[str]) -> str | None:
    """The reference cosign names in ``signing [REF]: …``, if it is one of ``references``.

    ``ALL`` when cosign names the whole batch: both generations name every reference they were
    given, ``signing [R1 R2 …]``, whichever one failed (see :func:`stopped_at`).
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

_PUSHING = re.compile(r"^Pushing signature to: (\S+)\s*$", re.MULTILINE)
# Failures that happen before cosign prints "Pushing signature to:" for the reference it is on.
_BEFORE_PUSH = re.compile(r"accessing entity|accessing image|getting signer|reading key", re.I)


def stopped_at(stderr: str, references: Sequence[str]) -> int | None:
    """Where a run over several ``references`` stopped: the index of the one that failed.

    The references before it were signed. cosign signs in order, stops at the first failure and
    prints ``Pushing signature to: REPO`` before each push; its error names every reference, so
    these lines are what tells how far it got. The reference whose push was in progress when it
    failed (or was killed) counts as failed, unless the error is one that comes before the push
    of the next reference: re-signing a signed reference adds a duplicate signature, reporting an
    unsigned one as signed would lose it. ``None`` when nothing was pushed or the lines don't match
    the references one to one (``--recursive`` pushes one signature per child manifest).
    """
    pushed = _PUSHING.findall(stderr)
    if not pushed or len(pushed) > len(references):
        return None
    for repo, reference in zip(pushed, references, strict=False):
        name = reference.split("@", 1)[0]
        if not repo.endswith(name.split("/", 1)[-1]):
            return None
    if _BEFORE_PUSH.search(summary_line(stderr)) and len(pushed) < len(references):
        return len(pushed)
    return len(pushed) - 1


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
    unavailable = bool(_UNAVAILABLE.search(text) or _UNAVAILABLE_CODES.search(text))
    tlog = bool(_TLOG.search(text))
    # The key is read before (2.x) or after (3.x) the registry; its errors name it plainly.
    if _KEY.search(text) and not unavailable and not tlog:
        return SigningKeyError, False
    if tlog:
        return TransparencyLogError, unavailable
    for pattern, kind in ((_AUTH, RegistryAuthError), (_NOT_FOUND, ImageNotFoundError)):
        if pattern.search(text):
            return kind, False
    if unavailable:
        return RegistryUnavailableError, True
    return (SigningKeyError if _KEY_WEAK.search(text) else CosignError), False


def tlog_indices(stderr: str) -> list[int]:
    """Log indices cosign 2.x reported, in the order it signed."""
    return [int(m.group(1)) for m in _TLOG_INDEX.finditer(stderr)]


def failure(
    what: str,
    *,
    reference: str,
    argv: Sequence[str],
    stderr: str,
    returncode: int | None,
    secrets: Iterable[str],
    attempts: int = 1,
    timed_out_after: float | None = None,
    command: str = "cosign",
    classified: tuple[type[CosignError], bool] | None = None,
) -> CosignError:
    """The typed error of one failed cosign run, with argv and stderr redacted.

    ``timed_out_after`` (seconds) when our timeout killed it: :class:`CosignTimeoutError` saying
    ``COMMAND did not finish within …``; otherwise the class read from stderr (or
    ``classified``) with the message ``WHAT failed: <cosign's error line>``.
    """
    secrets = tuple(secrets)
    shown_argv = tuple(redact(arg, secrets) for arg in argv)
    shown_stderr = redact(stderr, secrets)
    if timed_out_after is not None:
        return CosignTimeoutError(
            f"{command} did not finish within {timed_out_after:g} s; its process group was killed",
            timeout=timed_out_after,
            reference=reference,
            argv=shown_argv,
            stderr=shown_stderr,
            attempts=attempts,
        )
    error_type, transient = classified or classify(shown_stderr)
    return error_type(
        f"{what} failed: {summary_line(shown_stderr)}",
        reference=reference,
        argv=shown_argv,
        returncode=returncode,
        stderr=shown_stderr,
        attempts=attempts,
        transient=transient,
    )
