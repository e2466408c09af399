"""The test infrastructure works for real: registry auth, image pushing, raw cosign sign/verify.

These double as smoke tests of the environment: if they fail, nothing else can be trusted.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from pathlib import Path

import pytest

from tests.infra.images import (
    OCI_INDEX,
    Pusher,
    get_manifest,
    list_tags,
    manifest_exists,
    push_image,
    push_index,
    signature_tags,
)
from tests.infra.registry import RegistryFactory, RegistryServer, free_port
from tests.infra.tools import GENERATIONS, KeyPair, Tools, cosign_environ

pytestmark = pytest.mark.integration

COSIGN_TIMEOUT = 120


def _get_v2(server: RegistryServer) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def sign_argv(cosign: Path, gen: str, key: Path, ref: str) -> list[str]:
    """Sign with a key and no transparency log; 3.x must also opt out of its signing config."""
    offline = ["--tlog-upload=false"]
    if gen == "3":
        # 3.x rejects --tlog-upload=false while --use-signing-config is on (its default).
        offline = ["--use-signing-config=false", "--tlog-upload=false"]
    return [str(cosign), "sign", "--key", str(key), "-y", *offline, ref]


def verify_argv(cosign: Path, pub: Path, ref: str) -> list[str]:
    return [str(cosign), "verify", "--key", str(pub), "--insecure-ignore-tlog", ref]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=COSIGN_TIMEOUT, check=False
    )


def test_tools_are_the_two_generations(tools: Tools, tmp_path: Path) -> None:
    """Debian's builds all say `GitVersion: devel`; the sign flags tell 2.x from 3.x."""
    env = cosign_environ(home=tmp_path)
    for gen in GENERATIONS:
        assert tools.cosign_versions[gen].startswith(f"{gen}.")
        help_text = run([str(tools.cosign[gen]), "sign", "--help"], env).stdout
        assert ("--use-signing-config" in help_text) == (gen == "3")
    version = run([str(tools.registry), "--version"], env)
    assert version.returncode == 0
    assert tools.registry_version.split("+")[0].split("-")[0] in version.stdout


def test_registry_requires_auth(registry: RegistryServer) -> None:
    response = _get_v2(registry)
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == 'Basic realm="test"'
    assert registry.user == "signer"
    assert registry.password
    with pytest.raises(RuntimeError, match="401"):
        push_image(registry.url, "app")
    with pytest.raises(RuntimeError, match="401"):
        push_image(registry.url, "app", auth=("signer", "wrong"))


def test_open_registry_needs_no_auth(open_registry: RegistryServer) -> None:
    assert _get_v2(open_registry).status == 200
    assert open_registry.credentials is None
    digest = push_image(open_registry.url, "open")
    assert manifest_exists(open_registry.url, "open", digest)


def test_push_image_by_digest_and_tag(registry: RegistryServer) -> None:
    auth = registry.credentials
    first = push_image(registry.url, "infra/push", auth=auth)
    second = push_image(registry.url, "infra/push", auth=auth)
    assert first.startswith("sha256:")
    assert len(first) == len("sha256:") + 64
    assert first != second, "every push must yield a fresh digest"
    assert manifest_exists(registry.url, "infra/push", first, auth=auth)
    assert not manifest_exists(registry.url, "infra/push", "sha256:" + "0" * 64, auth=auth)
    assert list_tags(registry.url, "infra/push", auth=auth) == []

    tagged = push_image(registry.url, "infra/push", "v1", auth=auth)
    assert list_tags(registry.url, "infra/push", auth=auth) == ["v1"]
    assert manifest_exists(registry.url, "infra/push", "v1", auth=auth)
    assert manifest_exists(registry.url, "infra/push", tagged, auth=auth)
    assert list_tags(registry.url, "infra/nothing-here", auth=auth) == []


def test_push_index(registry: RegistryServer) -> None:
    auth = registry.credentials
    children = [push_image(registry.url, "infra/multi", auth=auth) for _ in range(2)]
    index = push_index(registry.url, "infra/multi", "latest", children, auth=auth)
    media_type, body = get_manifest(registry.url, "infra/multi", "latest", auth=auth)
    assert media_type == OCI_INDEX
    assert all(child in body.decode() for child in children)
    assert manifest_exists(registry.url, "infra/multi", index, auth=auth)


def test_push_fixture_and_image_fixture(push: Pusher, image: str, registry: RegistryServer) -> None:
    assert image.startswith(f"{registry.host}/app@sha256:")
    ref = push("infra/fixture", "t1")
    assert ref.by_tag == f"{registry.host}/infra/fixture:t1"
    assert ref.by_digest == f"{registry.host}/infra/fixture@{ref.digest}"
    assert push().tag is None


def test_registry_stop_restart_same_port(registry_factory: RegistryFactory) -> None:
    server = registry_factory()
    digest = push_image(server.url, "keep")
    port = server.port
    server.stop()
    assert not server.running
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass
    server.start()
    assert server.port == port
    assert manifest_exists(server.url, "keep", digest)


def test_free_port_is_closed() -> None:
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", free_port()), 2),
    ):
        pass


def test_cosign_signs_and_verifies(
    cosign_gen: str,
    cosign_bin: Path,
    keypair: KeyPair,
    other_keypair: KeyPair,
    image: str,
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    docker_config = registry.write_docker_config(tmp_path / "docker")
    env = cosign_environ(home=tmp_path, docker_config=docker_config, password=keypair.password)

    host_repo, digest = image.split("@")
    repo = host_repo.split("/", 1)[1]
    auth = registry.credentials
    assert signature_tags(registry.url, repo, digest, auth=auth) == []
    signed = run(sign_argv(cosign_bin, cosign_gen, keypair.key_path, image), env)
    assert signed.returncode == 0, signed.stderr
    expected_tag = digest.replace(":", "-") + (".sig" if cosign_gen == "2" else "")
    assert signature_tags(registry.url, repo, digest, auth=auth) == [expected_tag]

    verified = run(verify_argv(cosign_bin, keypair.pub_path, image), env)
    assert verified.returncode == 0, verified.stderr
    assert digest in verified.stdout

    wrong_key = run(verify_argv(cosign_bin, other_keypair.pub_path, image), env)
    assert wrong_key.returncode != 0

    no_auth_env = cosign_environ(
        home=tmp_path, docker_config=tmp_path / "empty", password=keypair.password
    )
    denied = run(sign_argv(cosign_bin, cosign_gen, keypair.key_path, image), no_auth_env)
    assert denied.returncode != 0
    assert "UNAUTHORIZED" in denied.stderr
