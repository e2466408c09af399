"""The transparency log (Rekor): which API it speaks, and what cosign needs to upload to it.

cosign 2.x uploads to a Rekor v1 log named by ``--rekor-url``. cosign 3.x takes its service URLs
from a signing config and verifies what it uploaded against a trusted root; this module writes
both (``cosign signing-config create``, ``cosign trusted-root create``) into a private folder
once per Signer, and reads the log index from the Sigstore bundle cosign 3.x writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from cosign_signer import _process
from cosign_signer.command import CosignCommand, CosignCommandBuilder, TlogSetup, redact
from cosign_signer.config import Config
from cosign_signer.errors import ConfigError, TransparencyLogError

__all__ = ["TlogFiles", "bundle_log_index", "detect_api_version", "read_bundle_index"]

_log = logging.getLogger("cosign_signer")
_DETECT_TIMEOUT = 10.0
_PEM_PREFIX = "-----BEGIN"
_HTTP_OK = 200


def detect_api_version(rekor_url: str, *, timeout: float = _DETECT_TIMEOUT) -> int:
    """1 when ``GET /api/v1/log`` answers with a log's info (rekor-server), else 2 (rekor-tiles)."""
    import urllib.error  # noqa: PLC0415 - imported on use: keeps `import cosign_signer` fast
    import urllib.request  # noqa: PLC0415

    url = f"{rekor_url}/api/v1/log"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) only, checked by Config
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            body = json.loads(answer.read(1 << 16) or b"{}")
            status = answer.status
    except urllib.error.HTTPError as exc:
        _log.debug("GET %s: %s; taking Rekor API version 2", url, exc.code)
        return 2
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransparencyLogError(
            f"cannot reach the transparency log at {rekor_url}: {reason}", transient=True
        ) from None
    version = 1 if status == _HTTP_OK and isinstance(body, dict) and "treeSize" in body else 2
    _log.debug("GET %s: %s; Rekor API version %d", url, status, version)
    return version


def read_bundle_index(path: str) -> int | None:
    """The log index in the Sigstore bundle file cosign 3.x wrote (see :func:`bundle_log_index`)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return bundle_log_index(document)


def bundle_log_index(document: object) -> int | None:
    """The log index of a parsed Sigstore bundle, or None when it holds no log entry.

    The index is a JSON string; protobuf's JSON form leaves out a zero, so an entry without
    ``logIndex`` is entry 0.
    """
    try:
        entries = document["verificationMaterial"]["tlogEntries"]  # type: ignore[index]
        first = entries[0]
        return int(first.get("logIndex", 0))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


class TlogFiles:
    """A private folder (0700) with what cosign needs for the log; removed by :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: str | None = None
        self._setup: TlogSetup | None = None
        self._counter = 0

    def setup(self, config: Config, builder: CosignCommandBuilder, binary: str) -> TlogSetup:
        """Prepare once (detect the API version, write key/config/root); later calls reuse it."""
        with self._lock:
            if self._setup is None:
                self._setup = self._prepare(config, builder, binary)
            return self._setup

    def bundle_path(self) -> str:
        """A fresh path in the private folder for one cosign run's bundle."""
        with self._lock:
            self._counter += 1
            return str(Path(self._ensure_folder()) / f"bundle-{self._counter}.json")

    def close(self) -> None:
        """Remove the folder and everything in it."""
        with self._lock:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
            self._folder, self._setup = None, None

    def _ensure_folder(self) -> str:
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="cosign-signer-tlog-")
        return self._folder

    def _prepare(self, config: Config, builder: CosignCommandBuilder, binary: str) -> TlogSetup:
        if config.rekor_url is None:
            raise ConfigError("rekor_url: required when upload_tlog is true")
        version = config.rekor_api_version or detect_api_version(config.rekor_url)
        public_key = self._public_key_file(config)
        caps = builder.capabilities
        if not caps.uses_signing_config:
            setup = TlogSetup(api_version=version, public_key_path=public_key)
            builder.tlog_flags(setup)  # raises ConfigError now for a log cosign 2.x can't use
            return setup
        if public_key is None:
            raise ConfigError(
                "rekor_public_key: cosign 3.x checks what it uploads against the log's public key; "
                "set rekor_public_key to its PEM file (or the PEM text)"
            )
        folder = Path(self._ensure_folder())
        signing_config, trusted_root = folder / "signing-config.json", folder / "trusted-root.json"
        self._run(
            builder.signing_config_create(
                rekor_url=config.rekor_url,
                api_version=version,
                out=str(signing_config),
                binary=binary,
            ),
            config,
        )
        self._run(
            builder.trusted_root_create(
                rekor_url=config.rekor_url,
                public_key=public_key,
                out=str(trusted_root),
                binary=binary,
            ),
            config,
        )
        _log.debug("wrote a signing config and trusted root for Rekor v%d in %s", version, folder)
        return TlogSetup(
            api_version=version,
            signing_config=str(signing_config),
            trusted_root=str(trusted_root),
            public_key_path=public_key,
        )

    def _public_key_file(self, config: Config) -> str | None:
        value = config.rekor_public_key
        if value is None:
            return None
        if value.lstrip().startswith(_PEM_PREFIX):
            path = Path(self._ensure_folder()) / "rekor.pub"
            path.write_text(value.strip() + "\n", encoding="utf-8")
            return str(path)
        if not os.path.isfile(value):  # noqa: PTH113 - a plain check on the configured path
            raise ConfigError(f"rekor_public_key: no such file {value!r}")
        return os.path.abspath(value)  # noqa: PTH100

    @staticmethod
    def _run(command: CosignCommand, config: Config) -> None:
        try:
            done = _process.run(
                command.argv, env={**os.environ, **command.env}, timeout=config.timeout
            )
        except _process.ProcessTimeout:
            raise TransparencyLogError(
                f"{command.argv[1]} {command.argv[2]} did not finish within {config.timeout:g} s",
                argv=command.argv,
            ) from None
        if done.returncode != 0:
            stderr = redact(done.stderr, config.secret_values)
            raise TransparencyLogError(
                f"cosign {command.argv[1]} {command.argv[2]} failed for {config.rekor_url}",
                argv=command.argv,
                returncode=done.returncode,
                stderr=stderr,
            )
