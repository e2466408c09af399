"""The Signer against the real cosign (2.x and 3.x) and a real registry with htpasswd auth."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cosign_signer import (
    BatchSignError,
    ConfigError,
    CosignNotFoundError,
    ImageNotFoundError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryUnavailableError,
    SigningKeyError,
    SignResult,
    UnknownKeyAliasError,
)
from tests.helpers import make_signer, spy_binary, verify
from tests.infra.images import Pusher, signature_tags
from tests.infra.registry import RegistryServer, free_port
from tests.infra.tools import KeyPair

MISSING = "sha256:" + "0" * 63 + "1"


def test_sign_one_image_and_verify(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    image = push()
    signer = make_signer(cosign_bin, registry, keypair)
    result = signer.sign_image(image.by_digest, key="prod", annotations={"tag": "1.2"})
    assert result == SignResult(
        reference=image.by_digest, digest=image.digest, key="prod", tlog_index=None
    )
    checked = verify(
        cosign_bin, image.by_digest, keypair.pub_path, registry=registry, home=tmp_path
    )
    assert checked.returncode == 0, checked.stderr
    assert '"tag":"1.2"' in checked.stdout.replace(" ", "")


def test_tag_reference_is_signed_by_digest(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    image = push(tag="v1")
    assert image.by_tag is not None
    result = make_signer(cosign_bin, registry, keypair).sign_image(image.by_tag, key="prod")
    assert result.reference == image.by_tag
    assert result.digest == image.digest
    assert signature_tags(registry.url, image.repo, image.digest, auth=registry.credentials)
    checked = verify(
        cosign_bin, image.by_digest, keypair.pub_path, registry=registry, home=tmp_path
    )
    assert checked.returncode == 0, checked.stderr


def test_batch_in_input_order_with_duplicates_signed_once(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    images = [push(repo="batch", tag=f"t{i}") for i in range(5)]
    refs = [i.by_digest for i in images]
    tagged = images[2].by_tag
    assert tagged is not None
    seen: list[str] = []
    signer = make_signer(cosign_bin, registry, keypair, max_workers=2)
    results = signer.sign_images(
        [*refs, refs[0], tagged], key="prod", on_result=lambda ref, _outcome: seen.append(ref)
    )
    assert [r.reference for r in results] == [*refs, tagged]
    assert [r.digest for r in results] == [*(i.digest for i in images), images[2].digest]
    assert sorted(seen) == sorted([*refs, tagged])
    for image in images:
        tags = signature_tags(registry.url, image.repo, image.digest, auth=registry.credentials)
        assert tags, f"no signature for {image.by_digest}"
        checked = verify(
            cosign_bin, image.by_digest, keypair.pub_path, registry=registry, home=tmp_path
        )
        assert checked.returncode == 0, checked.stderr


def test_missing_image_in_the_middle_of_a_batch(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    images = [push(repo="holes") for _ in range(4)]
    missing = f"{registry.host}/holes@{MISSING}"
    refs = [
        images[0].by_digest,
        images[1].by_digest,
        missing,
        images[2].by_digest,
        images[3].by_digest,
    ]
    with pytest.raises(BatchSignError) as info:
        make_signer(cosign_bin, registry, keypair, max_workers=1).sign_images(refs, key="prod")
    assert [r.reference for r in info.value.results] == [i.by_digest for i in images]
    assert list(info.value.failures) == [missing]
    assert isinstance(info.value.failures[missing], ImageNotFoundError)
    assert signature_tags(registry.url, "holes", MISSING, auth=registry.credentials) == []


def test_missing_digest_and_tag_are_not_signed(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    push(repo="absent")  # the repository exists; the digest and tag don't
    signer = make_signer(cosign_bin, registry, keypair)
    for ref in (f"{registry.host}/absent@{MISSING}", f"{registry.host}/absent:no-such-tag"):
        with pytest.raises(ImageNotFoundError) as info:
            signer.sign_image(ref, key="prod")
        assert info.value.reference == ref
    assert signature_tags(registry.url, "absent", MISSING, auth=registry.credentials) == []


def test_wrong_key_password(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    signer = make_signer(
        cosign_bin, registry, keypair, env_variables={"COSIGN_PASSWORD": "wrong-pw-123"}
    )
    with pytest.raises(SigningKeyError) as info:
        signer.sign_image(push().by_digest, key="prod")
    assert "decrypt" in str(info.value)
    assert info.value.returncode == 1
    assert info.value.argv[1] == "sign"
    assert "wrong-pw-123" not in str(info.value)


def test_missing_key_file_fails_every_reference_with_one_run(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    spy, log = spy_binary(tmp_path, cosign_bin)
    signer = make_signer(
        spy, registry, keypair, key_aliases={"prod": str(tmp_path / "nope.key")}, max_workers=1
    )
    refs = [push().by_digest for _ in range(3)]
    with pytest.raises(BatchSignError) as info:
        signer.sign_images(refs, key="prod")
    assert set(info.value.failures) == set(refs)
    assert all(isinstance(e, SigningKeyError) for e in info.value.failures.values())
    signs = [line for line in log.read_text().splitlines() if line.startswith("sign --key")]
    assert len(signs) == 1


def test_wrong_registry_password_starts_no_cosign(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    spy, log = spy_binary(tmp_path, cosign_bin)
    signer = make_signer(spy, registry, keypair, registry_password="not-the-password")
    with pytest.raises(RegistryAuthError) as info:
        signer.sign_image(push().by_digest, key="prod")
    assert "not-the-password" not in str(info.value)
    assert not any(line.startswith("sign --key") for line in log.read_text().splitlines())


def test_no_credentials_on_auth_registry(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    signer = make_signer(cosign_bin, None, keypair)
    with pytest.raises(RegistryAuthError):
        signer.sign_image(push().by_digest, key="prod")


def test_registry_port_closed(cosign_bin: Path, keypair: KeyPair) -> None:
    ref = f"127.0.0.1:{free_port()}/app@{MISSING}"
    signer = make_signer(cosign_bin, None, keypair, retries=1)
    with pytest.raises(RegistryUnavailableError) as info:
        signer.sign_image(ref, key="prod")
    assert info.value.attempts == 2
    assert info.value.transient


def test_open_registry_without_credentials(
    cosign_bin: Path, open_registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    image = push(server=open_registry)
    result = make_signer(cosign_bin, open_registry, keypair).sign_image(image.by_digest, key="prod")
    assert result.digest == image.digest
    checked = verify(
        cosign_bin, image.by_digest, keypair.pub_path, registry=open_registry, home=tmp_path
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("kind", ["missing", "directory", "not-executable"])
def test_cosign_binary_unusable(kind: str, tmp_path: Path, keypair: KeyPair) -> None:
    target = tmp_path / "cosign"
    if kind == "directory":
        target.mkdir()
    elif kind == "not-executable":
        target.write_text("#!/bin/sh\n")
        target.chmod(stat.S_IRUSR | stat.S_IWUSR)
    signer = make_signer(target, None, keypair)
    with pytest.raises(CosignNotFoundError) as info:
        signer.sign_image(f"127.0.0.1:1/app@{MISSING}", key="prod")
    expected = {
        "missing": "no such file",
        "directory": "is a directory",
        "not-executable": "is not executable",
    }
    assert expected[kind] in str(info.value)


def test_binary_not_on_path(
    keypair: KeyPair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    signer = make_signer(Path("unused"), None, keypair, cosign_binary="cosign-not-here")
    with pytest.raises(CosignNotFoundError, match="not found on PATH"):
        signer.sign_image(f"127.0.0.1:1/app@{MISSING}", key="prod")


def test_unknown_alias_and_bad_input_start_nothing(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    spy, log = spy_binary(tmp_path, cosign_bin)
    signer = make_signer(spy, registry, keypair)
    good = push().by_digest
    with pytest.raises(UnknownKeyAliasError, match="known aliases: prod"):
        signer.sign_images([good], key="prdo")
    for bad in ("--output-file=/tmp/x", f"{registry.host}/App:1", "reg.io/app", "a b:1"):
        with pytest.raises(InvalidReferenceError):
            signer.sign_images([good, bad], key="prod")
    with pytest.raises(ConfigError, match="annotations"):
        signer.sign_images([good], key="prod", annotations={"-x": "y"})
    assert not log.exists() or "sign --key" not in log.read_text()
    assert (
        signature_tags(registry.url, "app", good.rsplit("@", 1)[1], auth=registry.credentials) == []
    )


def test_credentials_folder_is_private_and_removed(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    probe = tmp_path / "probe"
    script = tmp_path / "cosign-probe"
    # Record what the child saw of its DOCKER_CONFIG folder, then sign for real.
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = sign ] && [ "$2" != --help ]; then stat -c "%a %n" "$DOCKER_CONFIG" "$DOCKER_CONFIG/config.json" > "{probe}"; fi\n'
        f'exec "{cosign_bin}" "$@"\n'
    )
    script.chmod(0o755)
    make_signer(script, registry, keypair).sign_image(push().by_digest, key="prod")
    lines = probe.read_text().split("\n")
    folder_mode, folder = lines[0].split(" ", 1)
    file_mode = lines[1].split(" ", 1)[0]
    assert (folder_mode, file_mode) == ("700", "600")
    assert not os.path.exists(folder)
