"""The exception hierarchy: one base class, every error carries data, not just text.

Everything this library raises derives from :class:`CosignSignerError`.  Errors about a cosign run
(or the registry pre-flight that stands in for one) derive from :class:`CosignError` and keep the
redacted argv, the exit code, the redacted stderr and the reference they concern, printed in one
fixed layout (see :meth:`CosignError.__str__`).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cosign_signer.signer import SignResult

__all__ = [
    "ArtifactNotFoundError",
    "BatchSignError",
    "ConfigError",
    "CosignError",
    "CosignNotFoundError",
    "CosignSignerError",
    "CosignTimeoutError",
    "ImageNotFoundError",
    "InvalidReferenceError",
    "RegistryAuthError",
    "RegistryUnavailableError",
    "SigningKeyError",
    "TransparencyLogError",
    "UnknownKeyAliasError",
    "VerificationError",
]

_STDERR_TAIL_LINES = 20


class CosignSignerError(Exception):
    """Base class of every error raised by cosign_signer."""


class ConfigError(CosignSignerError):
    """The configuration cannot be used: missing file, YAML syntax, unknown key, bad type or value.

    ``problems`` lists every problem found, each starting with the field path it concerns
    (``upload_tlog: expected a boolean``), so one run shows all of them.
    """

    def __init__(self, problems: Sequence[str] | str, *, source: str | None = None) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"invalid cosign_signer configuration{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            count = len(self.problems)
            text = f"invalid cosign_signer configuration{where} ({count} problems):\n{lines}"
        super().__init__(text)


class UnknownKeyAliasError(ConfigError):
    """A key alias was asked for that ``key_aliases`` does not define."""

    def __init__(self, alias: str, known: Iterable[str], *, suggestion: str | None = None) -> None:
        self.alias = alias
        self.known: tuple[str, ...] = tuple(sorted(known))
        known_text = ", ".join(self.known) if self.known else "(none configured)"
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(
            f"key_aliases: unknown key alias {alias!r}{hint}; known aliases: {known_text}"
        )


class InvalidReferenceError(CosignSignerError, ValueError):
    """A reference is not a valid OCI reference with a tag or a sha256 digest.

    Raised before any process starts; ``reference`` is the string as given, ``reason`` says what is
    wrong with it.
    """

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {reference!r}: {reason}")


class CosignNotFoundError(CosignSignerError):
    """The cosign binary cannot be run: not found on PATH, not executable, or a directory."""

    def __init__(self, binary: str, reason: str) -> None:
        self.binary = binary
        self.reason = reason
        super().__init__(
            f"cannot run cosign binary {binary!r}: {reason}; "
            "install cosign or set cosign_binary in the configuration"
        )


class ArtifactNotFoundError(CosignSignerError):
    """A file to sign cannot be read, or its bundle cannot be written. Raised before cosign runs.

    Missing, a directory or unreadable; or the bundle's folder is missing or not writable.
    ``path`` is the file concerned (the artifact, or the bundle it would write), ``reason`` what
    is wrong with it. Named like :class:`CosignNotFoundError`, which also covers "not executable".
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot sign {path!r}: {reason}")


class CosignError(CosignSignerError):
    """cosign ran and failed (or the registry pre-flight that precedes it did).

    Attributes: ``argv`` (redacted; empty when no cosign process ran), ``returncode`` (``None``
    when no process ran or it was killed), ``stderr`` (redacted), ``reference`` (as given by the
    caller), ``attempts`` (how many times it was tried) and ``transient`` (whether a retry could
    succeed).
    """

    #: Whether errors of this class are worth retrying.
    transient_default = False

    def __init__(
        self,
        message: str,
        *,
        reference: str | None = None,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
        attempts: int = 1,
        transient: bool | None = None,
    ) -> None:
        self.message = message
        self.reference = reference
        self.argv: tuple[str, ...] = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.attempts = attempts
        self.transient = self.transient_default if transient is None else transient
        super().__init__(message)

    def __str__(self) -> str:
        """One fixed layout: the message, then one indented line per known fact."""
        lines = [self.message]
        if self.reference is not None:
            lines.append(f"  reference: {self.reference}")
        if self.attempts > 1:
            lines.append(f"  attempts: {self.attempts}")
        if self.argv:
            lines.append(f"  command: {shlex.join(self.argv)}")
        if self.returncode is not None:
            lines.append(f"  exit code: {self.returncode}")
        tail = self.stderr.strip().splitlines()[-_STDERR_TAIL_LINES:]
        if tail:
            lines.append("  stderr:")
            lines.extend(f"    {line}" for line in tail)
        return "\n".join(lines)

    def with_attempts(self, attempts: int) -> CosignError:
        """Return the same error recording that it was tried ``attempts`` times."""
        self.attempts = attempts
        return self


class RegistryAuthError(CosignError):
    """The registry refused the credentials (401/403, UNAUTHORIZED, DENIED). Not retried."""


class ImageNotFoundError(CosignError):
    """The image (tag or digest) or its repository does not exist in the registry. Not retried."""


class RegistryUnavailableError(CosignError):
    """The registry could not be reached or failed (connection refused/reset, DNS, 5xx, 429).

    Transient: retried up to ``retries`` times before it is raised.
    """

    transient_default = True


class SigningKeyError(CosignError):
    """The signing key cannot be used: missing file, wrong password, unusable KMS reference."""


class TransparencyLogError(CosignError):
    """The transparency log (Rekor) failed or could not be reached."""

    transient_default = True


class CosignTimeoutError(CosignError):
    """cosign did not finish within ``timeout`` seconds; its process group was killed and reaped."""

    transient_default = True

    def __init__(self, message: str, *, timeout: float, **kwargs: object) -> None:
        self.timeout = timeout
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class VerificationError(CosignError):
    """No signature of the image verifies with the key (none at all, or none by this key).

    Not retried. ``returncode`` is cosign's: 10 (no signatures found) or 12 (no matching
    signatures) from both generations; 1 when 3.x rejects a bundle made with another key.
    """


class BatchSignError(CosignSignerError):
    """Some references of a batch failed.

    ``results`` holds the :class:`SignResult` of every reference that was signed (input order);
    ``failures`` maps each failed reference, as given, to its typed error.
    """

    def __init__(
        self, results: Sequence[SignResult], failures: Mapping[str, CosignSignerError]
    ) -> None:
        self.results: tuple[SignResult, ...] = tuple(results)
        self.failures: dict[str, CosignSignerError] = dict(failures)
        total = len(self.results) + len(self.failures)
        lines = [f"{len(self.failures)} of {total} references failed to sign:"]
        for ref, err in self.failures.items():
            first = str(err).splitlines()[0]
            lines.append(f"  {ref}: {type(err).__name__}: {first}")
        super().__init__("\n".join(lines))
