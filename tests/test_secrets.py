"""Secrets audit, proven against the real cosign 2.x and 3.x and a real registry with htpasswd.

Three secrets are configured: the registry password, the key password (``COSIGN_PASSWORD`` in
``env_variables``) and an API token (``MY_API_TOKEN``: a secret by its name). None of them may
appear on any process's argv (/proc/*/cmdline, readable by every user), in DEBUG logs, in the
repr/str of the Config, the Signer, results or exceptions, or in ``CosignError.stderr``; the
private DOCKER_CONFIG folder that holds the registry password is 0700 and is removed afterwards
(after a timeout and an interrupt too: see test_timeouts.py).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cosign_signer import (
    BatchSignError,
    Config,
    CosignError,
    RegistryAuthError,
    Signer,
    SigningKeyError,
)
from tests.helpers import signer_config
from tests.infra import procfs
from tests.infra.fault_proxy import WRITES, FaultProxy
from tests.infra.images import Pusher
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair


class Secrets:
    def __init__(self, registry: RegistryServer, keypair: KeyPair) -> None:
        assert registry.password is not None
        self.registry_password = registry.password
        self.key_password = keypair.password
        self.token = "tok-" + secrets.token_hex(16)

    @property
    def values(self) -> tuple[str, str, str]:
        return (self.registry_password, self.key_password, self.token)

    def assert_absent(self, *texts: str) -> None:
        for text in texts:
            for value in self.values:
                assert value not in text, f"secret found in: {text[:200]}…"


@pytest.fixture
def creds(registry: RegistryServer, keypair: KeyPair) -> Secrets:
    return Secrets(registry, keypair)


class Probe:
    """A wrapper that records the child's DOCKER_CONFIG folder (path, modes), then execs cosign."""

    def __init__(self, tmp_path: Path, real: Path) -> None:
        self.record = tmp_path / "docker-config-seen"
        self.path = tmp_path / "cosign-probe"
        self.path.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = sign ] && [ "$2" != --help ]; then stat -c "%a %n" "$DOCKER_CONFIG" '
            f'"$DOCKER_CONFIG/config.json" >> "{self.record}"; fi\n'
            f'exec "{real}" "$@"\n'
        )
        self.path.chmod(0o755)

    def folders(self) -> list[tuple[str, str]]:
        """(mode, path) of every DOCKER_CONFIG folder and config.json a cosign run was given."""
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        return [(mode, path) for mode, _, path in (line.partition(" ") for line in lines)]

    def assert_private_and_removed(self) -> None:
        seen = self.folders()
        assert seen, "cosign never ran"
        for mode, path in seen:
            assert mode == ("600" if path.endswith("config.json") else "700"), (mode, path)
            assert not os.path.exists(path), f"{path} left on disk"


def make(
    cosign: Path, registry: RegistryServer, keypair: KeyPair, creds: Secrets, **overrides: Any
) -> Signer:
    section = signer_config(
        cosign,
        registry,
        keypair,
        log_level="DEBUG",
        env_variables={"COSIGN_PASSWORD": creds.key_password, "MY_API_TOKEN": creds.token},
        **overrides,
    )
    return Signer(Config.from_dict(section))


def _texts_of(error: BaseException) -> Iterable[str]:
    yield str(error)
    yield repr(error)
    if isinstance(error, CosignError):
        yield error.stderr
        yield " ".join(error.argv)
    if isinstance(error, BatchSignError):
        for inner in error.failures.values():
            yield from _texts_of(inner)


def test_no_secret_on_argv_logs_or_reprs_while_a_real_batch_runs(
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    creds: Secrets,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Probe(tmp_path, cosign_bin)
    signer = make(probe.path, registry, keypair, creds, max_workers=2)
    refs = [push(repo="audit").by_digest for _ in range(4)]
    with caplog.at_level(logging.DEBUG), procfs.CmdlineSampler() as sampler:
        results = signer.sign_images(refs, key="prod")
    assert [r.reference for r in results] == refs

    cosign_lines = [line for line in sampler.seen if line.startswith(f"{cosign_bin} sign --key")]
    assert cosign_lines, f"no cosign process sampled in {sampler.rounds} rounds"
    creds.assert_absent(*sampler.seen)
    creds.assert_absent(
        caplog.text,
        repr(signer.config),
        str(signer.config),
        repr(signer),
        str(signer),
        *(repr(r) for r in results),
        *(str(r) for r in results),
    )
    assert any("running " in r.getMessage() for r in caplog.records)  # DEBUG was on
    probe.assert_private_and_removed()


def test_secrets_reach_cosign_only_by_environment_and_private_file(
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    creds: Secrets,
    tmp_path: Path,
) -> None:
    # A wrapper that saves what its own process received, where only its owner can read it.
    seen = tmp_path / "seen"
    seen.mkdir(mode=0o700)
    wrapper = tmp_path / "cosign-env"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = sign ] && [ "$2" != --help ]; then '
        f'cat /proc/$$/cmdline > "{seen}/cmdline"; cat /proc/$$/environ > "{seen}/environ"; '
        f'cat "$DOCKER_CONFIG/config.json" > "{seen}/docker-config"; fi\n'
        f'exec "{cosign_bin}" "$@"\n'
    )
    wrapper.chmod(0o755)
    make(wrapper, registry, keypair, creds).sign_image(push().by_digest, key="prod")

    creds.assert_absent((seen / "cmdline").read_bytes().decode())
    environ = dict(
        part.partition("=")[::2]
        for part in (seen / "environ").read_bytes().decode().split("\0")
        if part
    )
    assert environ["COSIGN_PASSWORD"] == creds.key_password
    assert environ["MY_API_TOKEN"] == creds.token
    assert creds.registry_password not in "\0".join(environ.values())  # only in the private file
    assert '"auths"' in (seen / "docker-config").read_text()


def test_registry_echoing_secrets_is_redacted_everywhere(
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    creds: Secrets,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A misbehaving registry that puts every secret into its error message: cosign prints it on
    # stderr, so what the library keeps and logs must have it redacted.
    probe = Probe(tmp_path, cosign_bin)
    with FaultProxy(registry.port) as proxy:
        proxy.respond(
            403,
            count=None,
            methods=WRITES,
            message=f"denied: password {creds.registry_password}, key {creds.key_password}, "
            f"token {creds.token}",
        )
        signer = make(probe.path, registry, keypair, creds)
        refs = [proxy.route(push(repo="echo").by_digest) for _ in range(2)]
        with caplog.at_level(logging.DEBUG), pytest.raises(BatchSignError) as info:
            signer.sign_images(refs, key="prod")

    errors = list(info.value.failures.values())
    assert {type(e) for e in errors} == {RegistryAuthError}
    for error in errors:
        assert isinstance(error, CosignError)
        assert "denied: password ***, key ***, token ***" in error.stderr
        assert "DENIED: denied: password ***" in str(error)
    creds.assert_absent(*_texts_of(info.value), caplog.text)
    probe.assert_private_and_removed()  # removed after a failure too


def test_secret_in_a_key_path_is_redacted_from_argv_and_stderr(
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    creds: Secrets,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The real cosign names the missing key file in its error: make that path hold a secret.
    missing = tmp_path / creds.token / "cosign.key"
    signer = make(cosign_bin, registry, keypair, creds, key_aliases={"prod": str(missing)})
    with caplog.at_level(logging.DEBUG), pytest.raises(SigningKeyError) as info:
        signer.sign_image(push().by_digest, key="prod")
    error = info.value
    assert f"{tmp_path}/***/cosign.key: no such file or directory" in error.stderr
    assert f"{tmp_path}/***/cosign.key" in error.argv
    creds.assert_absent(*_texts_of(error), caplog.text)


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o640, True), (0o604, True), (0o600, False)], ids=["0640", "0604", "0600"]
)
def test_config_file_readable_by_others_is_warned_about(
    mode: int,
    warned: bool,
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    creds: Secrets,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    section = signer_config(cosign_bin, registry, keypair)
    path = tmp_path / "signing.yaml"
    path.write_text(yaml.safe_dump({"cosign_signer": section}))
    path.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="cosign_signer"):
        signer = Signer.from_config_file(path)
        assert signer.sign_image(push().by_digest, key="prod").key == "prod"
    warnings = [
        r.getMessage() for r in caplog.records if "readable by group or others" in r.getMessage()
    ]
    assert bool(warnings) is warned
    if warned:
        assert f"run: chmod 600 {path}" in warnings[0]
    creds.assert_absent(caplog.text)
