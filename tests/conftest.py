"""Shared fixtures: the real cosign binaries, real registries, fresh images, key pairs.

Tools come from ``scripts/provision.sh`` (``.tools/``); a missing tool is an error that says to
run it, never a skip. Any test that uses a fixture needing a real binary is marked
``integration`` automatically (``-m "not integration"`` runs the pure unit tests only).

Shared (session) registries must stay up: a test that stops or restarts a registry takes its own
from ``registry_factory``.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.images import ImageRef, Pusher, push_image
from tests.infra.registry import HtpasswdAuth, RegistryAuth, RegistryFactory, RegistryServer
from tests.infra.rekor import (
    RekorTools,
    RekorToolsNotProvisionedError,
    RekorV1Server,
    RekorV2Server,
    find_rekor_tools,
)
from tests.infra.tools import (
    GENERATIONS,
    KeyPair,
    KeyPairError,
    Tools,
    ToolsNotProvisionedError,
    find_tools,
    generate_key_pair,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_USER = "signer"

# Fixtures that start a real binary: a test using any of them (directly or through another
# fixture) is an integration test.
INTEGRATION_FIXTURES = frozenset(
    {
        "tools",
        "registry",
        "open_registry",
        "registry_factory",
        "cosign_bin",
        "keypair",
        "other_keypair",
        "image",
        "push",
        "docker_config",
        "rekor_tools",
        "rekor_v1",
        "rekor_v2",
    }
)


# ---- pytest hooks -------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "rekor: runs a real Rekor log (needs scripts/provision-rekor.sh)"
    )
    config.addinivalue_line(
        "markers",
        "integration: runs the real cosign binaries and/or a real registry "
        "(needs scripts/provision.sh)",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        tools = find_tools(REPO_ROOT)
    except ToolsNotProvisionedError as exc:
        return [f"tools: NOT PROVISIONED: {exc}"]
    cosigns = ", ".join(
        f"cosign {gen}: {tools.cosign_versions[gen]} ({tools.cosign[gen].resolve()})"
        for gen in GENERATIONS
    )
    lines = [cosigns, f"docker-registry: {tools.registry_version} ({tools.registry.resolve()})"]
    rekor_versions = REPO_ROOT / ".tools" / "rekor" / "versions.txt"
    if rekor_versions.is_file():
        wanted = {
            "golang-github-sigstore-rekor-dev": "rekor v1",
            "golang-github-sigstore-rekor-tiles-dev": "rekor-tiles v2",
            "golang-github-google-trillian-dev": "trillian",
        }
        built = dict(
            line.split(" ", 1) for line in rekor_versions.read_text().splitlines() if " " in line
        )
        lines.append(
            ", ".join(f"{label}: {built[pkg]}" for pkg, label in wanted.items() if pkg in built)
        )
    return lines


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection looks at the markers
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real tools ran, even under ``-q`` (which hides the header)."""
    terminalreporter.section("tools under test")
    for line in pytest_report_header(terminalreporter.config):
        terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if INTEGRATION_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.integration)


# ---- tools --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tools() -> Tools:
    """The provisioned binaries; fails (not skips) with a hint when ``.tools/`` is missing."""
    try:
        return find_tools(REPO_ROOT)
    except ToolsNotProvisionedError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=GENERATIONS, ids=[f"cosign{gen}" for gen in GENERATIONS])
def cosign_gen(request: pytest.FixtureRequest) -> str:
    """The cosign generation under test: ``"2"`` or ``"3"`` (test ids ``cosign2``/``cosign3``)."""
    gen: str = request.param
    return gen


@pytest.fixture
def cosign_bin(tools: Tools, cosign_gen: str) -> Path:
    """Path of the cosign binary of ``cosign_gen``."""
    return tools.cosign[cosign_gen]


# ---- registries ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tools: Tools) -> Iterator[RegistryServer]:
    """A registry with htpasswd auth: user ``signer``, random password. Shared: don't stop it."""
    auth = HtpasswdAuth(REGISTRY_USER, secrets.token_urlsafe(18))
    with RegistryServer(tools.registry, auth=auth) as server:
        yield server


@pytest.fixture(scope="session")
def open_registry(tools: Tools) -> Iterator[RegistryServer]:
    """A registry without auth. Shared: don't stop it."""
    with RegistryServer(tools.registry) as server:
        yield server


@pytest.fixture
def registry_factory(tools: Tools) -> Iterator[RegistryFactory]:
    """``make(auth=None | HtpasswdAuth(...), port=None) -> RegistryServer``, started; all are
    closed at teardown. For tests that stop, restart or break a registry."""
    servers: list[RegistryServer] = []

    def make(*, auth: RegistryAuth | None = None, port: int | None = None) -> RegistryServer:
        server = RegistryServer(tools.registry, auth=auth, port=port)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def docker_config(tmp_path: Path, registry: RegistryServer) -> Path:
    """A private ``DOCKER_CONFIG`` folder (0700) holding the ``registry`` credentials."""
    return registry.write_docker_config(tmp_path / "docker-config")


# ---- images -------------------------------------------------------------------------------------


@pytest.fixture
def push(registry: RegistryServer) -> Pusher:
    """``push(repo="app", tag=None, *, server=registry) -> ImageRef``: a FRESH image each call."""

    def _push(
        repo: str = "app", tag: str | None = None, *, server: RegistryServer | None = None
    ) -> ImageRef:
        target = server if server is not None else registry
        digest = push_image(target.url, repo, tag, auth=target.credentials)
        return ImageRef(host=target.host, repo=repo, digest=digest, tag=tag)

    return _push


@pytest.fixture
def image(push: Pusher) -> str:
    """A fresh image in ``registry``, as ``127.0.0.1:PORT/app@sha256:…``."""
    return push().by_digest


# ---- keys ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keypair(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The signing key pair of the session (``COSIGN_PASSWORD`` = ``keypair.password``)."""
    try:
        return generate_key_pair(tools, tmp_path_factory.mktemp("keys"), "signing")
    except KeyPairError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def other_keypair(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """A second, unrelated key pair (for "verify with the wrong key" and key-alias tests)."""
    try:
        return generate_key_pair(tools, tmp_path_factory.mktemp("other-keys"), "other")
    except KeyPairError as exc:
        pytest.fail(str(exc), pytrace=False)


# ---- transparency logs --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rekor_tools() -> RekorTools:
    """The Rekor binaries built by ``scripts/provision-rekor.sh`` (fails, never skips, if absent)."""
    try:
        return find_rekor_tools(REPO_ROOT)
    except RekorToolsNotProvisionedError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def rekor_v1(rekor_tools: RekorTools) -> Iterator[RekorV1Server]:
    """A real Rekor v1 (rekor-server + Trillian + MariaDB) on loopback. Shared: don't stop it."""
    with RekorV1Server(rekor_tools) as server:
        yield server


@pytest.fixture(scope="session")
def rekor_v2(rekor_tools: RekorTools) -> Iterator[RekorV2Server]:
    """A real Rekor v2 (rekor-tiles, POSIX storage) on loopback. Shared: don't stop it."""
    with RekorV2Server(rekor_tools) as server:
        yield server


@pytest.fixture
def unrelated_log_key(tmp_path: Path, rekor_tools: RekorTools) -> Path:
    """The public key of no log at all (for "verify with the wrong log key")."""
    private, public = tmp_path / "unrelated.key", tmp_path / "unrelated.pub"
    for argv in (
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(private)],
        ["pkey", "-in", str(private), "-pubout", "-out", str(public)],
    ):  # fmt: skip
        subprocess.run([str(rekor_tools.openssl), *argv], check=True, capture_output=True)
    return public
