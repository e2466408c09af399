"""Locate the real binaries that ``scripts/provision.sh`` links into ``.tools/``."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GENERATIONS: tuple[str, ...] = ("2", "3")
"""cosign major versions the tests run against, as the strings used for parametrisation."""

_PROVISION_HINT = "run `bash scripts/provision.sh` in the repo root to install and link them"


class ToolsNotProvisionedError(RuntimeError):
    """The tools under ``.tools/`` are missing or unusable."""


class KeyPairError(RuntimeError):
    """``cosign generate-key-pair`` failed."""


@dataclass(frozen=True)
class Tools:
    """Paths and Debian package versions of the provisioned tools."""

    cosign: dict[str, Path]
    """cosign binary per generation: ``{"2": .tools/bin/cosign2, "3": .tools/bin/cosign3}``."""
    cosign_versions: dict[str, str]
    """Debian package version per generation, e.g. ``{"2": "2.5.0-2+b5", "3": "3.1.1-2"}``.

    Debian's cosign prints ``GitVersion: devel``, so this is the only version there is.
    """
    registry: Path
    """The distribution registry binary (Debian's ``docker-registry``)."""
    registry_version: str
    """Debian package version of ``docker-registry``, e.g. ``2.8.3+ds1-3``."""


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file (no quoting, ``#`` comments) such as ``.tools/versions.env``."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def _check_executable(path: Path, what: str) -> Path:
    if not path.exists():
        raise ToolsNotProvisionedError(f"{what} not found at {path}: {_PROVISION_HINT}")
    if path.is_dir():
        raise ToolsNotProvisionedError(f"{what} at {path} is a directory: {_PROVISION_HINT}")
    if not os.access(path, os.X_OK):
        raise ToolsNotProvisionedError(f"{what} at {path} is not executable: {_PROVISION_HINT}")
    return path


def find_tools(repo_root: Path) -> Tools:
    """Return the provisioned tools of the clone at ``repo_root``.

    Raises:
        ToolsNotProvisionedError: a binary or ``.tools/versions.env`` is missing (the message says
            to run ``scripts/provision.sh``).
    """
    tools_dir = repo_root.absolute() / ".tools"
    versions_file = tools_dir / "versions.env"
    if not versions_file.is_file():
        raise ToolsNotProvisionedError(f"{versions_file} not found: {_PROVISION_HINT}")
    versions = read_env_file(versions_file)
    wanted = [f"COSIGN{gen}_VERSION" for gen in GENERATIONS] + ["DOCKER_REGISTRY_VERSION"]
    missing = [key for key in wanted if not versions.get(key)]
    if missing:
        raise ToolsNotProvisionedError(
            f"{versions_file} lacks {', '.join(missing)}: {_PROVISION_HINT}"
        )
    cosign = {
        gen: _check_executable(tools_dir / "bin" / f"cosign{gen}", f"cosign {gen}.x")
        for gen in GENERATIONS
    }
    registry = _check_executable(tools_dir / "bin" / "docker-registry", "docker-registry")
    return Tools(
        cosign=cosign,
        cosign_versions={gen: versions[f"COSIGN{gen}_VERSION"] for gen in GENERATIONS},
        registry=registry,
        registry_version=versions["DOCKER_REGISTRY_VERSION"],
    )


def cosign_environ(
    *,
    home: Path,
    docker_config: Path | None = None,
    password: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A clean environment for running cosign by hand in tests.

    Drops the caller's ``COSIGN_*``/``SIGSTORE_*``/``TUF_*``/``DOCKER_CONFIG`` so nothing from the
    developer's machine leaks in, and points ``HOME`` at ``home`` (cosign keeps a TUF cache there).
    """
    dropped = ("COSIGN_", "SIGSTORE_", "TUF_", "DOCKER_CONFIG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["HOME"] = str(home)
    if docker_config is not None:
        env["DOCKER_CONFIG"] = str(docker_config)
    if password is not None:
        env["COSIGN_PASSWORD"] = password
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class KeyPair:
    """An encrypted cosign key pair (made by cosign 2; both generations sign with it)."""

    key_path: Path
    pub_path: Path
    password: str = field(repr=False)


def generate_key_pair(tools: Tools, directory: Path, name: str = "cosign") -> KeyPair:
    """Make ``directory/NAME.key`` (encrypted, random password) and ``NAME.pub`` with cosign 2."""
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    env = cosign_environ(home=directory, password=password)
    result = subprocess.run(
        [str(tools.cosign["2"]), "generate-key-pair", "--output-key-prefix", name],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise KeyPairError(
            f"cosign generate-key-pair failed ({result.returncode}):\n{result.stderr}"
        )
    return KeyPair(directory / f"{name}.key", directory / f"{name}.pub", password)
