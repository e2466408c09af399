"""Verifying image signatures with a key alias: the public key, one ``cosign verify`` per digest.

For a key file, the public key is derived once per Signer with ``cosign public-key --key KEY``
(``COSIGN_PASSWORD`` from ``env_variables`` unlocks it) and kept in a private temporary file
(folder 0700, file 0600) until :meth:`PublicKeyCache.close`. For a KMS URI, cosign is given the
URI and fetches the public key itself.

``cosign verify --key PUB --insecure-ignore-tlog=true`` checks the signature against the key,
offline: neither generation reaches for the public TUF repository or a transparency log then.
What a generation sees: 2.x reads only ``.sig`` signatures (its own); 3.x reads both its bundles
and 2.x's ``.sig`` signatures.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cosign_signer import _classify, _process, _retry
from cosign_signer.command import CosignCommandBuilder, redact
from cosign_signer.config import Config
from cosign_signer.errors import CosignError, CosignTimeoutError, SigningKeyError, VerificationError
from cosign_signer.keys import ResolvedKey
from cosign_signer.reference import ImageReference

__all__ = [
    "PublicKeyCache",
    "VerifyResult",
    "derive_public_key",
    "parse_payloads",
    "split_signed",
    "verify_digest",
]

_log = logging.getLogger("cosign_signer")

#: cosign's exit codes for "nothing verifies" (measured: 2.5 and 3.1).
_NO_SIGNATURES = 10
_NO_MATCHING_SIGNATURES = 12
#: What cosign prints when signatures exist or not but none verifies with the key.
_UNVERIFIED = re.compile(
    r"no signatures found|no matching signatures|no matching attestations|"
    r"invalid signature when validating|accepted signatures do not match threshold|"
    r"failed to verify signature",
    re.IGNORECASE,
)


def _to_tuple(items: Iterable[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    return tuple(items)


@attrs.frozen
class VerifyResult:
    """A reference whose signature verified with the key.

    ``reference`` as given, ``digest`` the manifest verified, ``key`` the alias, ``payloads`` the
    verified signature payloads as cosign prints them (simple-signing JSON objects:
    ``payload["critical"]["image"]["docker-manifest-digest"]``, annotations under ``"optional"``).
    """

    reference: str
    digest: str
    key: str
    payloads: tuple[Mapping[str, Any], ...] = attrs.field(converter=_to_tuple)

    @property
    def annotations(self) -> tuple[Mapping[str, Any], ...]:
        """The ``optional`` annotations of each verified payload (``{}`` when none)."""
        return tuple(p.get("optional") or {} for p in self.payloads)


class PublicKeyCache:
    """Public keys derived from key files, one temporary PEM file each, until :meth:`close`.

    Thread-safe: one derivation per key even when many threads ask at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[str, str] = {}
        self._folder: str | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def path_for(self, key: ResolvedKey, derive: Callable[[], str]) -> str:
        """The ``--key`` to verify with: the KMS URI itself, or a PEM file from ``derive()``."""
        if key.is_kms:
            return key.reference
        with self._lock:
            cached = self._paths.get(key.reference)
            if cached is not None:
                return cached
            pem = derive()
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix="cosign-signer-pub-")
                self._finalizer = weakref.finalize(
                    self, shutil.rmtree, self._folder, ignore_errors=True
                )
            path = Path(self._folder) / f"{len(self._paths)}.pub"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(pem)
            self._paths[key.reference] = str(path)
            return str(path)

    @property
    def folder(self) -> str | None:
        """The private folder holding the PEM files, while there is one."""
        return self._folder

    def close(self) -> None:
        """Remove every derived public key file. The cache can be used again afterwards."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._paths.clear()
            self._folder = None
            self._finalizer = None


def derive_public_key(
    *, config: Config, builder: CosignCommandBuilder, binary: str, key: ResolvedKey
) -> str:
    """Run ``cosign public-key --key KEY``; return the PEM or raise :class:`SigningKeyError`."""
    command = builder.public_key(key, binary=binary)
    secrets = config.secret_values
    shown_argv = tuple(redact(arg, secrets) for arg in command.argv)  # for errors only
    try:
        done = _process.run(command.argv, env={**os.environ, **command.env}, timeout=config.timeout)
    except _process.ProcessTimeout as exc:
        raise CosignTimeoutError(
            f"cosign public-key did not finish within {config.timeout:g} s",
            timeout=config.timeout,
            argv=shown_argv,
            stderr=redact(exc.stderr, secrets),
        ) from None
    if done.returncode != 0 or "PUBLIC KEY-----" not in done.stdout:
        stderr = redact(done.stderr, secrets)
        raise SigningKeyError(
            f"deriving the public key of alias {key.alias!r} failed: "
            f"{_classify.summary_line(stderr)}",
            argv=shown_argv,
            returncode=done.returncode,
            stderr=stderr,
        )
    return done.stdout


def verify_digest(
    original: str,
    cosign_ref: str,
    digest: str,
    *,
    public_key: str,
    key: ResolvedKey,
    config: Config,
    builder: CosignCommandBuilder,
    binary: str,
    docker_config_dir: str | None,
) -> VerifyResult:
    """Verify ``cosign_ref`` (``NAME@sha256:…``); ``original`` is how the caller named it.

    Raises :class:`VerificationError` when no signature verifies with the key, or the classified
    :class:`CosignError` (``RegistryAuthError``, ``RegistryUnavailableError``, …) when cosign
    could not look; transient failures are retried ``config.retries`` times first.
    """
    command = builder.verify(
        public_key, cosign_ref, docker_config_dir=docker_config_dir, binary=binary
    )
    return _retry.with_retries(
        lambda attempt: _verify_once(
            original,
            digest,
            argv=command.argv,
            extra_env=command.env,
            key=key,
            config=config,
            attempt=attempt,
        ),
        what=f"verifying {original}",
        retries=config.retries,
        base=config.retry_backoff,
    )


def _verify_once(
    original: str,
    digest: str,
    *,
    argv: tuple[str, ...],
    extra_env: Mapping[str, str],
    key: ResolvedKey,
    config: Config,
    attempt: int,
) -> VerifyResult:
    secrets = config.secret_values
    try:
        done = _process.run(argv, env={**os.environ, **extra_env}, timeout=config.timeout)
    except _process.ProcessTimeout as exc:
        raise _classify.failure(
            f"verifying {original}",
            reference=original,
            argv=argv,
            stderr=exc.stderr,
            returncode=None,
            secrets=secrets,
            attempts=attempt,
            timed_out_after=config.timeout,
            command="cosign verify",
        ) from None
    if done.returncode == 0:
        return VerifyResult(
            reference=original, digest=digest, key=key.alias, payloads=parse_payloads(done.stdout)
        )
    stderr = redact(done.stderr, secrets)
    argv = tuple(redact(arg, secrets) for arg in argv)  # what errors show
    summary = _classify.summary_line(stderr)
    if done.returncode in (_NO_SIGNATURES, _NO_MATCHING_SIGNATURES) or _UNVERIFIED.search(summary):
        raise VerificationError(
            f"{original} has no signature that verifies with key {key.alias!r}: {summary}",
            reference=original,
            argv=argv,
            returncode=done.returncode,
            stderr=stderr,
            attempts=attempt,
        )
    raise _classify.failure(
        f"verifying {original}",
        reference=original,
        argv=argv,
        stderr=stderr,
        returncode=done.returncode,
        secrets=secrets,
        attempts=attempt,
    )


def split_signed(
    references: Sequence[ImageReference],
    check: Callable[[ImageReference], VerifyResult],
    *,
    workers: int,
) -> tuple[dict[str, VerifyResult], dict[str, CosignError], list[ImageReference]]:
    """Check every reference concurrently: ``(verified, could not check, not signed by the key)``.

    The first two are keyed by the reference as given; the third keeps input order.
    """
    verified: dict[str, VerifyResult] = {}
    failed: dict[str, CosignError] = {}
    unsigned: list[ImageReference] = []
    if not references:
        return verified, failed, unsigned
    with cf.ThreadPoolExecutor(
        min(workers, len(references)), thread_name_prefix="cosign-verify"
    ) as pool:
        futures = [pool.submit(check, ref) for ref in references]
        for ref, future in zip(references, futures, strict=True):
            try:
                verified[ref.original] = future.result()
            except VerificationError:
                unsigned.append(ref)
            except CosignError as exc:
                failed[ref.original] = exc
    return verified, failed, unsigned


def parse_payloads(stdout: str) -> tuple[dict[str, Any], ...]:
    """The JSON payloads ``cosign verify`` prints (one JSON array per verified image)."""
    payloads: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        text = line.strip()
        if not text.startswith("["):
            continue
        with contextlib.suppress(ValueError):
            items = json.loads(text)
            payloads.extend(item for item in items if isinstance(item, dict))
    return tuple(payloads)
