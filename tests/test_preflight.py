"""Never sign what isn't there: the Signer's registry pre-flight, end to end with real cosign."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosign_signer import ImageNotFoundError, RegistryAuthError
from tests.helpers import make_signer, spy_binary, verify
from tests.infra.images import Pusher, push_image, push_index, signature_tags
from tests.infra.registry import RegistryServer
from tests.infra.token_registry import TokenRegistry
from tests.infra.tools import KeyPair, Tools, cosign_environ

MISSING = "sha256:" + "e" * 64


def test_missing_digest_and_tag_on_open_registry(
    cosign_bin: Path, open_registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    """cosign 2.x alone would sign the missing digest and exit 0; the pre-flight stops it."""
    push(repo="open-absent", server=open_registry)
    spy, log = spy_binary(tmp_path, cosign_bin)
    signer = make_signer(spy, open_registry, keypair)
    for ref in (
        f"{open_registry.host}/open-absent@{MISSING}",
        f"{open_registry.host}/open-absent:nope",
    ):
        with pytest.raises(ImageNotFoundError) as info:
            signer.sign_image(ref, key="prod")
        assert info.value.argv == ()  # cosign never ran
        assert "not found" in str(info.value)
    assert "sign --key" not in log.read_text()
    assert signature_tags(open_registry.url, "open-absent", MISSING) == []


def test_image_index_digest_is_accepted(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    children = [push(repo="multi").digest for _ in range(2)]
    index = push_index(registry.url, "multi", "v1", children, auth=registry.credentials)
    signer = make_signer(cosign_bin, registry, keypair)
    by_tag = signer.sign_image(f"{registry.host}/multi:v1", key="prod")
    assert by_tag.digest == index
    checked = verify(
        cosign_bin,
        f"{registry.host}/multi@{index}",
        keypair.pub_path,
        registry=registry,
        home=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr


@pytest.fixture
def token_registry(tools: Tools) -> Iterator[TokenRegistry]:
    with TokenRegistry(tools.registry) as server:
        yield server


def test_bearer_token_registry_end_to_end(
    cosign_bin: Path, token_registry: TokenRegistry, keypair: KeyPair, tmp_path: Path
) -> None:
    """The pre-flight follows the Bearer challenge; cosign signs through the same token flow."""
    with token_registry.open_for_push() as url:
        digest = push_image(url, "tok/app", "v1")
    token_registry.tokens.clear()
    signer = make_signer(
        cosign_bin,
        None,
        keypair,
        registry_user=token_registry.user,
        registry_password=token_registry.password,
    )
    result = signer.sign_image(f"{token_registry.host}/tok/app:v1", key="prod")
    assert result.digest == digest
    assert token_registry.tokens.requests, "no token was asked for"
    docker_config = tmp_path / "dc"
    docker_config.mkdir(mode=0o700)
    auth = base64.b64encode(f"{token_registry.user}:{token_registry.password}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {token_registry.host: {"auth": auth}}})
    )
    checked = subprocess.run(
        [
            str(cosign_bin),
            "verify",
            "--key",
            str(keypair.pub_path),
            "--insecure-ignore-tlog",
            f"{token_registry.host}/tok/app@{digest}",
        ],
        env=cosign_environ(home=tmp_path, docker_config=docker_config),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_bearer_token_registry_wrong_password_starts_no_cosign(
    cosign_bin: Path, token_registry: TokenRegistry, keypair: KeyPair, tmp_path: Path
) -> None:
    with token_registry.open_for_push() as url:
        push_image(url, "tok/app", "v1")
    spy, log = spy_binary(tmp_path, cosign_bin)
    signer = make_signer(
        spy, None, keypair, registry_user=token_registry.user, registry_password="wrong-one"
    )
    with pytest.raises(RegistryAuthError) as info:
        signer.sign_image(f"{token_registry.host}/tok/app:v1", key="prod")
    assert "wrong-one" not in str(info.value)
    assert "sign --key" not in log.read_text()
