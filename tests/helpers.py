"""Small helpers shared by integration tests: configs for the Signer and cosign verify."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cosign_signer import Config, Signer
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair, cosign_environ


def signer_config(
    cosign_bin: Path,
    registry: RegistryServer | None,
    keypair: KeyPair,
    **overrides: Any,
) -> dict[str, Any]:
    """The ``cosign_signer`` section for a test: alias ``prod``, the registry's credentials."""
    section: dict[str, Any] = {
        "cosign_binary": str(cosign_bin),
        "env_variables": {"COSIGN_PASSWORD": keypair.password},
        "key_aliases": {"prod": str(keypair.key_path)},
        "timeout": 120,
        "retries": 0,
        "retry_backoff": 0.05,
    }
    if registry is not None and registry.credentials is not None:
        section["registry_user"], section["registry_password"] = registry.credentials
    section.update(overrides)
    return section


def make_signer(
    cosign_bin: Path, registry: RegistryServer | None, keypair: KeyPair, **overrides: Any
) -> Signer:
    return Signer(Config.from_dict(signer_config(cosign_bin, registry, keypair, **overrides)))


def verify(
    cosign_bin: Path,
    reference: str,
    pub: Path,
    *,
    registry: RegistryServer,
    home: Path,
) -> subprocess.CompletedProcess[str]:
    """``cosign verify --key PUB --insecure-ignore-tlog REF`` with the registry's credentials."""
    docker_config = None
    if registry.credentials is not None:
        # A folder of its own per call: verifications may run in parallel threads.
        docker_config = registry.write_docker_config(Path(tempfile.mkdtemp(dir=home)) / "dc")
    env = cosign_environ(home=home, docker_config=docker_config)
    return subprocess.run(
        [str(cosign_bin), "verify", "--key", str(pub), "--insecure-ignore-tlog", reference],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def spy_binary(tmp_path: Path, real: Path) -> tuple[Path, Path]:
    """A wrapper that records each invocation's argv (one line each), then runs the real cosign.

    Not a stand-in: every call reaches the real binary; the log only proves what was started.
    """
    log = tmp_path / "invocations.log"
    script = tmp_path / "cosign-spy"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return script, log
