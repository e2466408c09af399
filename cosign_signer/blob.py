"""Signing files ("blobs"): check the file, run ``cosign sign-blob``, read the bundle back.

The signature goes into a Sigstore bundle next to the file (``<file>.sigstore.json``) unless the
caller names another path. Both generations write the same format: 2.x when asked with
``--new-bundle-format=true`` (when its ``sign-blob --help`` lists it), 3.x always; 3.x refuses to
sign a blob without ``--bundle``. The file is checked (and hashed) before cosign starts, so a
missing or unreadable file is an :class:`ArtifactNotFoundError`, not a cosign error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import attrs

from cosign_signer import _classify, _process, _retry, _tlog
from cosign_signer.command import CosignCommandBuilder, TlogSetup, redact
from cosign_signer.config import Config
from cosign_signer.errors import ArtifactNotFoundError, CosignError
from cosign_signer.keys import ResolvedKey

__all__ = ["BUNDLE_SUFFIX", "BlobSignResult", "default_bundle_path", "sign_blob"]

_log = logging.getLogger("cosign_signer")

#: What the default bundle path adds to the file's name.
BUNDLE_SUFFIX = ".sigstore.json"
_CHUNK = 1 << 20


@attrs.frozen
class BlobSignResult:
    """One signed file.

    ``path`` and ``bundle_path`` are absolute; ``sha256`` is the hex digest of the bytes signed;
    ``signature`` the base64 signature from the bundle; ``tlog_index`` the transparency-log index
    when one was written (``upload_tlog``), else ``None``.
    """

    path: Path
    sha256: str
    bundle_path: Path
    signature: str
    tlog_index: int | None = None


def default_bundle_path(path: str | os.PathLike[str]) -> Path:
    """Where the bundle of ``path`` goes by default: ``<file>.sigstore.json`` beside it."""
    file = Path(path).absolute()
    return file.with_name(file.name + BUNDLE_SUFFIX)


def sign_blob(
    path: str | os.PathLike[str],
    *,
    bundle_path: str | os.PathLike[str] | None,
    config: Config,
    builder: CosignCommandBuilder,
    binary: str,
    key: ResolvedKey,
    tlog: TlogSetup | None = None,
) -> BlobSignResult:
    """Sign one file with ``key`` (``builder`` holds ``cosign sign-blob --help``'s capabilities).

    Raises :class:`ArtifactNotFoundError` before cosign runs, the classified :class:`CosignError`
    when cosign fails (transient ones retried ``config.retries`` times, with backoff), or
    :class:`CosignError` when the bundle cannot be read back or names other bytes than were
    hashed (the file changed while it was signed).
    """
    artifact = Path(path).absolute()
    digest = _hash_file(artifact)
    bundle = Path(bundle_path).absolute() if bundle_path else default_bundle_path(artifact)
    _check_bundle_destination(bundle, artifact)
    command = builder.sign_blob(
        key, str(artifact), bundle_path=str(bundle), binary=binary, tlog=tlog
    )
    env = {**os.environ, **command.env}
    secrets = config.secret_values
    shown_argv = tuple(redact(arg, secrets) for arg in command.argv)  # for errors only

    def attempt_once(attempt: int) -> BlobSignResult:
        started = time.monotonic()
        timed_out: float | None
        try:
            done = _process.run(command.argv, env=env, timeout=config.timeout)
        except _process.ProcessTimeout as exc:
            stderr, returncode, timed_out = exc.stderr, None, config.timeout
        else:
            if done.returncode == 0:
                _log.info("signed %s in %.2f s", artifact, time.monotonic() - started)
                return _result(artifact, digest, bundle, shown_argv)
            stderr, returncode, timed_out = done.stderr, done.returncode, None
        raise _classify.failure(
            f"signing {artifact}",
            reference=str(artifact),
            argv=command.argv,
            stderr=stderr,
            returncode=returncode,
            secrets=secrets,
            attempts=attempt,
            timed_out_after=timed_out,
        )

    return _retry.with_retries(
        attempt_once, what=f"signing {artifact}", retries=config.retries, base=config.retry_backoff
    )


def _hash_file(path: Path) -> str:
    """The sha256 hex digest of ``path``; :class:`ArtifactNotFoundError` if it can't be read."""
    if path.is_dir():
        raise ArtifactNotFoundError(str(path), "is a directory, not a file")
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise ArtifactNotFoundError(str(path), "no such file") from None
    except PermissionError:
        raise ArtifactNotFoundError(str(path), "permission denied: cannot read it") from None
    except OSError as exc:
        raise ArtifactNotFoundError(str(path), f"cannot read it: {exc.strerror}") from None
    return digest.hexdigest()


def _check_bundle_destination(bundle: Path, artifact: Path) -> None:
    if bundle == artifact:
        raise ArtifactNotFoundError(str(bundle), "the bundle path is the file being signed")
    folder = bundle.parent
    if not folder.is_dir():
        raise ArtifactNotFoundError(str(bundle), f"the bundle's folder {folder} does not exist")
    if bundle.is_dir():
        raise ArtifactNotFoundError(str(bundle), "the bundle path is a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArtifactNotFoundError(str(bundle), f"the bundle's folder {folder} is not writable")


def _result(artifact: Path, digest: str, bundle: Path, argv: tuple[str, ...]) -> BlobSignResult:
    def fail(reason: str) -> CosignError:
        return CosignError(
            f"signing {artifact}: cosign exited 0 but {reason}",
            reference=str(artifact),
            argv=argv,
            returncode=0,
        )

    try:
        document = json.loads(bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise fail(f"its bundle {bundle} cannot be read: {exc}") from None
    signature, tlog_index, signed_digest = parse_bundle(document)
    if not signature:
        raise fail(f"its bundle {bundle} holds no signature")
    if signed_digest is not None and signed_digest != digest:
        raise fail(
            f"the bundle signs sha256 {signed_digest}, not the {digest} read before: "
            "the file changed while it was being signed"
        )
    return BlobSignResult(
        path=artifact, sha256=digest, bundle_path=bundle, signature=signature, tlog_index=tlog_index
    )


def parse_bundle(document: Any) -> tuple[str, int | None, str | None]:
    """``(signature, tlog index, signed sha256 hex)`` from a bundle cosign wrote.

    Reads the Sigstore bundle format (``messageSignature``, ``verificationMaterial.tlogEntries``)
    and cosign 2's older one (``base64Signature``, ``rekorBundle.Payload.logIndex``). Missing
    parts come back empty or ``None``.
    """
    if not isinstance(document, dict):
        return "", None, None
    message = document.get("messageSignature")
    if isinstance(message, dict):
        signature = str(message.get("signature") or "")
        signed = _hex_of(message.get("messageDigest"))
        return signature, _tlog.bundle_log_index(document), signed
    rekor = document.get("rekorBundle") or {}
    payload = rekor.get("Payload") if isinstance(rekor, dict) else None
    index = payload.get("logIndex") if isinstance(payload, dict) else None
    return str(document.get("base64Signature") or ""), _int_or_none(index), None


def _hex_of(message_digest: object) -> str | None:
    if not isinstance(message_digest, dict) or message_digest.get("algorithm") != "SHA2_256":
        return None
    try:
        return base64.b64decode(str(message_digest.get("digest") or ""), validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _int_or_none(value: object) -> int | None:
    # protobuf's JSON writes int64 as a string ("logIndex": "123")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
