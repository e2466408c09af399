"""The CosignCommandBuilder: pure code from config + key + references to argv and environment.

It never runs anything.  What a cosign binary supports is described by
:class:`CosignCapabilities`, parsed from ``cosign sign --help`` (Debian's builds print
``GitVersion: devel``, so the version string cannot tell 2.x from 3.x).  Secrets never go on argv:
the key password travels as ``COSIGN_PASSWORD`` and registry credentials in a private
``DOCKER_CONFIG`` folder whose path the caller provides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

from cosign_signer.config import Config
from cosign_signer.errors import ConfigError, InvalidReferenceError
from cosign_signer.keys import ResolvedKey

__all__ = [
    "CosignCapabilities",
    "CosignCommand",
    "CosignCommandBuilder",
    "TlogSetup",
    "validate_annotations",
]

_FLAG = re.compile(r"(?<![\w-])--([a-z0-9][a-z0-9-]*)")
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Validity start of the services in the signing configs and trusted roots this library writes.
TLOG_START_TIME = "2020-01-01T00:00:00Z"
#: Seconds our own timeout leaves cosign to report its ``--timeout`` before we kill it.
TIMEOUT_MARGIN = 5.0


@attrs.frozen
class CosignCapabilities:
    """What one cosign binary's ``sign`` command accepts, read from its ``--help`` text."""

    flags: frozenset[str]

    @classmethod
    def from_help(cls, help_text: str) -> CosignCapabilities:
        """Collect every ``--flag`` that ``cosign sign --help`` names (declared or in examples)."""
        return cls(flags=frozenset(_FLAG.findall(help_text)))

    def has(self, flag: str) -> bool:
        """Whether ``--flag`` is known to this binary."""
        return flag.lstrip("-") in self.flags

    @property
    def uses_signing_config(self) -> bool:
        """cosign 3.x: service URLs come from a signing config (``--use-signing-config``)."""
        return self.has("use-signing-config")

    @property
    def decrypts_key_per_reference(self) -> bool:
        """cosign 3.x decrypts the key once per reference, 2.x once per process (measured)."""
        return self.uses_signing_config

    @property
    def generation(self) -> str:
        """A label for logs: ``"3.x"`` when signing configs are supported, else ``"2.x"``."""
        return "3.x" if self.uses_signing_config else "2.x"


@attrs.frozen
class CosignCommand:
    """An argv and the extra environment the child needs (values may be secret)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = attrs.field(factory=dict, repr=lambda env: repr(sorted(env)))
    references: tuple[str, ...] = ()


@attrs.frozen
class TlogSetup:
    """How cosign reaches the transparency log, prepared once per Signer (see ``_tlog.py``).

    cosign 3.x: the private signing config and trusted root it signs with. Both: the log's public
    key file (cosign 2.x reads it from ``SIGSTORE_REKOR_PUBLIC_KEY`` instead of public TUF).
    """

    api_version: int
    signing_config: str | None = None
    trusted_root: str | None = None
    public_key_path: str | None = None


def validate_annotations(annotations: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Check annotations are safe to pass as ``-a key=value``; raise :class:`ConfigError` if not."""
    if not annotations:
        return ()
    problems = []
    for key, value in annotations.items():
        if not isinstance(key, str) or not _ANNOTATION_KEY.fullmatch(key):
            problems.append(
                f"annotations[{key!r}]: key must start with a letter or digit and hold only "
                "letters, digits and . _ / - (no '=', spaces or control characters)"
            )
        elif not isinstance(value, str):
            problems.append(f"annotations[{key!r}]: value must be a string")
        elif _CONTROL.search(value):
            problems.append(f"annotations[{key!r}]: value must not contain control characters")
        elif "=" in value:
            # cosign splits "key=value" at every '=' and refuses more than one (both generations).
            problems.append(f"annotations[{key!r}]: value must not contain '=' (cosign refuses it)")
    if problems:
        raise ConfigError(problems)
    return tuple(sorted(annotations.items()))


def _list_flag_item(item: str) -> str:
    """``item`` as ONE element of a cosign list flag such as ``-a``, which cosign reads as a line of
    CSV: quoted when it holds ``,`` or ``"`` (unquoted, ``-a k=x,evil=1`` would add ``evil=1``)."""
    if "," in item or '"' in item:
        return '"' + item.replace('"', '""') + '"'
    return item


class CosignCommandBuilder:
    """Build cosign commands for one config and one binary's capabilities. No side effects."""

    def __init__(self, config: Config, capabilities: CosignCapabilities) -> None:
        self._config = config
        self._caps = capabilities

    @property
    def capabilities(self) -> CosignCapabilities:
        """The capabilities the builder chooses flags by."""
        return self._caps

    def sign(
        self,
        key: ResolvedKey,
        references: Sequence[str],
        *,
        annotations: Mapping[str, str] | None = None,
        docker_config_dir: str | None = None,
        binary: str | None = None,
        upload: bool = True,
        recursive: bool = False,
        tlog: TlogSetup | None = None,
        bundle: str | None = None,
    ) -> CosignCommand:
        """The command that signs ``references`` (each ``NAME@sha256:…``) with ``key``.

        With ``upload_tlog``, cosign 3.x needs ``tlog`` (its signing config and trusted root) and
        writes the Sigstore bundle — where the log index is read from — to ``bundle``.

        ``docker_config_dir`` is the private folder holding registry credentials, when configured.
        ``upload=False`` adds ``--upload=false`` (3.x then insists on a bundle file: it gets
        ``--bundle=/dev/null``); ``recursive=True`` adds ``--recursive`` (an index and each child).
        """
        if not references:
            raise ValueError("no references to sign")
        for ref in references:
            if ref.startswith("-") or "@sha256:" not in ref:
                raise InvalidReferenceError(ref, "cosign is only given digest references")
        argv: list[str] = [
            binary or self._config.cosign_binary,
            "sign",
            "--key",
            key.reference,
            "-y",
        ]
        argv += self.tlog_flags(tlog)
        argv += self._registry_flags()
        argv += self._timeout_flags()
        if bundle is not None and self._caps.has("bundle"):
            argv.append(f"--bundle={bundle}")
        argv += self._sign_option_flags(upload=upload, recursive=recursive, bundle=bundle)
        for k, v in validate_annotations(annotations):
            argv += ["-a", _list_flag_item(f"{k}={v}")]
        argv.append("--")
        argv += references
        return CosignCommand(
            argv=tuple(argv),
            env=self.environment(docker_config_dir, tlog=tlog),
            references=tuple(references),
        )

    def signing_config_create(
        self, *, rekor_url: str, api_version: int, out: str, binary: str | None = None
    ) -> CosignCommand:
        """cosign 3.x: write a signing config whose only service is this Rekor (no Fulcio/TSA)."""
        argv = [
            binary or self._config.cosign_binary, "signing-config", "create",
            "--no-default-fulcio", "--no-default-oidc", "--no-default-tsa", "--no-default-rekor",
            f"--rekor=url={rekor_url},api-version={api_version},"
            f"start-time={TLOG_START_TIME},operator=cosign-signer",
            "--rekor-config=ANY",
            f"--out={out}",
        ]  # fmt: skip
        return CosignCommand(argv=tuple(argv), env={})

    def trusted_root_create(
        self, *, rekor_url: str, public_key: str, out: str, binary: str | None = None
    ) -> CosignCommand:
        """cosign 3.x: write a trusted root holding this Rekor's public key (no CT log, no CA)."""
        argv = [
            binary or self._config.cosign_binary, "trusted-root", "create",
            "--no-default-ctfe", "--no-default-fulcio", "--no-default-rekor", "--no-default-tsa",
            f"--rekor=url={rekor_url},public-key={public_key},start-time={TLOG_START_TIME}",
            f"--out={out}",
        ]  # fmt: skip
        return CosignCommand(argv=tuple(argv), env={})

    def sign_blob(
        self,
        key: ResolvedKey,
        path: str,
        *,
        bundle_path: str,
        binary: str | None = None,
        tlog: TlogSetup | None = None,
    ) -> CosignCommand:
        """The command that signs file ``path``, writing its Sigstore bundle to ``bundle_path``.

        Give this builder the capabilities of ``cosign sign-blob --help``. Both paths must be
        absolute: cosign rewrites a single-dash argument into a flag even after ``--``.
        2.x writes the Sigstore bundle format only when asked (``--new-bundle-format=true``);
        3.x always does and refuses to sign without ``--bundle``.
        """
        for name, value in (("path", path), ("bundle_path", bundle_path)):
            if not value.startswith("/"):
                raise ValueError(f"{name} must be absolute, got {value!r}")
        argv = [binary or self._config.cosign_binary, "sign-blob", "--key", key.reference, "-y"]
        argv += self.tlog_flags(tlog)
        if not self._caps.uses_signing_config and self._caps.has("new-bundle-format"):
            argv.append("--new-bundle-format=true")
        argv.append(f"--bundle={bundle_path}")
        argv += self._timeout_flags()
        argv += ["--", path]
        return CosignCommand(argv=tuple(argv), env=self.environment(tlog=tlog), references=(path,))

    def verify(
        self,
        public_key: str,
        reference: str,
        *,
        docker_config_dir: str | None = None,
        binary: str | None = None,
    ) -> CosignCommand:
        """The command that verifies ``reference`` (``NAME@sha256:…``) against ``public_key``.

        ``public_key`` is a PEM file or a KMS URI. The transparency log is not consulted
        (``--insecure-ignore-tlog=true``): this checks the signature against the key, offline;
        neither generation then reaches for the public TUF repository.
        """
        if reference.startswith("-") or "@sha256:" not in reference:
            raise InvalidReferenceError(reference, "cosign is only given digest references")
        argv = [binary or self._config.cosign_binary, "verify", "--key", public_key]
        argv.append("--insecure-ignore-tlog=true")
        argv += self._registry_flags()
        argv += self._timeout_flags()
        argv += ["--", reference]
        return CosignCommand(
            argv=tuple(argv), env=self.environment(docker_config_dir), references=(reference,)
        )

    def public_key(self, key: ResolvedKey, *, binary: str | None = None) -> CosignCommand:
        """The command that prints the PEM public key of ``key`` (``COSIGN_PASSWORD`` unlocks)."""
        argv = [binary or self._config.cosign_binary, "public-key", "--key", key.reference]
        argv += self._timeout_flags()
        return CosignCommand(argv=tuple(argv), env=self.environment())

    def environment(
        self, docker_config_dir: str | None = None, *, tlog: TlogSetup | None = None
    ) -> dict[str, str]:
        """The child's extra environment: ``env_variables`` plus credentials' locations."""
        env: dict[str, str] = dict(self._config.env_variables)
        if docker_config_dir is not None:
            env["DOCKER_CONFIG"] = docker_config_dir
        if tlog is not None and tlog.public_key_path and not self._caps.uses_signing_config:
            env["SIGSTORE_REKOR_PUBLIC_KEY"] = tlog.public_key_path
        return env

    def tlog_flags(self, tlog: TlogSetup | None = None) -> list[str]:
        """The transparency-log flags for this binary; ConfigError for a log it can't use."""
        config = self._config
        if self._caps.uses_signing_config:
            if not config.upload_tlog:
                return ["--use-signing-config=false", "--tlog-upload=false"]
            if tlog is None or not tlog.signing_config or not tlog.trusted_root:
                raise ConfigError(
                    "upload_tlog: cosign 3.x uploads through a signing config and trusted root; "
                    "build commands through Signer, which writes them"
                )
            # Never combined with --rekor-url/--tlog-upload (cosign 3 refuses the mix).
            return [
                f"--signing-config={tlog.signing_config}",
                f"--trusted-root={tlog.trusted_root}",
            ]
        if tlog is not None and tlog.api_version != 1:
            raise ConfigError(
                f"rekor_api_version: cosign 2.x uploads to Rekor v1 only; {config.rekor_url} is a "
                f"Rekor v{tlog.api_version} (rekor-tiles) log: use cosign 3.x or a Rekor v1 log"
            )
        flags = [f"--tlog-upload={'true' if config.upload_tlog else 'false'}"]
        if config.upload_tlog and config.rekor_url:
            flags.append(f"--rekor-url={config.rekor_url}")
        return flags

    def _timeout_flags(self) -> list[str]:
        if self._caps.has("timeout") and self._config.timeout > 2 * TIMEOUT_MARGIN:
            return [f"--timeout={int(self._config.timeout - TIMEOUT_MARGIN)}s"]
        return []

    def _sign_option_flags(
        self, *, upload: bool, recursive: bool, bundle: str | None = None
    ) -> list[str]:
        flags = []
        if not upload:
            flags.append("--upload=false")
            if self._caps.uses_signing_config and bundle is None:
                # measured: 3.x "must enable upload to the OCI registry or specify a local --bundle"
                flags.append(f"--bundle={os.devnull}")
        if recursive:
            flags.append("--recursive")
        return flags

    def _registry_flags(self) -> list[str]:
        flags = []
        if self._config.allow_http_registry and self._caps.has("allow-http-registry"):
            flags.append("--allow-http-registry=true")
        if self._config.allow_insecure_registry and self._caps.has("allow-insecure-registry"):
            flags.append("--allow-insecure-registry=true")
        return flags


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text`` with ``***`` (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
