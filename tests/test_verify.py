"""Signer.verify_image and sign_images(skip_signed=True), real cosign 2.x/3.x and registry."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cosign_signer import (
    BatchSignError,
    ImageNotFoundError,
    RegistryAuthError,
    SigningKeyError,
    VerificationError,
)
from tests.helpers import make_signer
from tests.helpers import spy_binary as spy
from tests.infra.images import Pusher
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair

MISSING = "sha256:" + "0" * 63 + "2"


def calls(log: Path, command: str) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith(f"{command} --key")]


def test_verify_signed_image_by_tag_and_digest(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    image = push(repo="verified", tag="v1")
    assert image.by_tag is not None
    with make_signer(cosign_bin, registry, keypair) as signer:
        signer.sign_image(image.by_digest, key="prod", annotations={"git": "abc123"})
        for ref in (image.by_tag, image.by_digest):
            result = signer.verify_image(ref, key="prod")
            assert result.reference == ref
            assert result.digest == image.digest
            assert result.key == "prod"
            digests = {p["critical"]["image"]["docker-manifest-digest"] for p in result.payloads}
            assert digests == {image.digest}
            assert {"git": "abc123"} in result.annotations


def test_unsigned_other_key_and_missing_image(
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    other_keypair: KeyPair,
    push: Pusher,
) -> None:
    signed, unsigned = push(repo="verify-neg"), push(repo="verify-neg")
    signer = make_signer(
        cosign_bin,
        registry,
        keypair,
        key_aliases={"prod": str(keypair.key_path), "other": str(other_keypair.key_path)},
        env_variables={"COSIGN_PASSWORD": keypair.password},
    )
    signer.sign_image(signed.by_digest, key="prod")
    with pytest.raises(VerificationError) as info:
        signer.verify_image(unsigned.by_digest, key="prod")
    assert info.value.returncode == 10
    assert "no signatures found" in str(info.value)
    assert info.value.reference == unsigned.by_digest
    assert not info.value.transient
    # the other key's password differs: derive its public key with its own password
    other = make_signer(
        cosign_bin, registry, other_keypair, key_aliases={"other": str(other_keypair.key_path)}
    )
    with pytest.raises(VerificationError) as info:
        other.verify_image(signed.by_digest, key="other")
    # 2.x: 12 "no matching signatures"; 3.x on its own bundle: 1 "no matching attestations"
    assert info.value.returncode in (1, 12)
    with pytest.raises(ImageNotFoundError):
        signer.verify_image(f"{registry.host}/verify-neg@{MISSING}", key="prod")
    signer.close()
    other.close()


def test_public_key_derived_once_kept_private_removed_on_close(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    binary, log = spy(tmp_path, cosign_bin)
    images = [push(repo="pubkey") for _ in range(2)]
    signer = make_signer(binary, registry, keypair)
    signer.sign_images([i.by_digest for i in images], key="prod")
    for image in images:
        signer.verify_image(image.by_digest, key="prod")
    assert len(calls(log, "public-key")) == 1
    verify_line = calls(log, "verify")[0]
    pub = verify_line.split()[2]
    assert stat.S_IMODE(os.stat(pub).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(pub)).st_mode) == 0o700
    assert keypair.password not in verify_line
    signer.close()
    assert not os.path.exists(os.path.dirname(pub))
    signer.verify_image(images[0].by_digest, key="prod")  # still usable: derives again
    assert len(calls(log, "public-key")) == 2
    signer.close()


def test_wrong_key_password_fails_verification_setup(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    signer = make_signer(
        cosign_bin, registry, keypair, env_variables={"COSIGN_PASSWORD": "wrong-pw-123"}
    )
    image = push(repo="verify-pw")
    with pytest.raises(SigningKeyError, match="decrypt") as info:
        signer.verify_image(image.by_digest, key="prod")
    assert info.value.argv[1] == "public-key"
    with pytest.raises(BatchSignError) as batch:
        signer.sign_images([image.by_digest], key="prod", skip_signed=True)
    assert isinstance(batch.value.failures[image.by_digest], SigningKeyError)


def test_verify_without_registry_credentials(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    with pytest.raises(RegistryAuthError):
        make_signer(cosign_bin, None, keypair).verify_image(push().by_digest, key="prod")


def test_skip_signed_signs_only_what_is_not_signed(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    binary, log = spy(tmp_path, cosign_bin)
    images = [push(repo="rerun", tag=f"r{i}") for i in range(3)]
    refs = [images[0].by_digest, f"{registry.host}/rerun:r1", images[2].by_digest]
    with make_signer(binary, registry, keypair, max_workers=1) as signer:
        signer.sign_image(images[0].by_digest, key="prod")
        first = signer.sign_images(refs, key="prod", skip_signed=True)
        assert [r.skipped for r in first] == [True, False, False]
        assert [r.digest for r in first] == [i.digest for i in images]
        signs = calls(log, "sign")
        assert len(signs) == 2  # the first sign_image, then one process for the two unsigned
        assert images[0].digest not in signs[1]
        # a rerun of the pipeline: everything verifies, nothing is signed
        second = signer.sign_images(refs, key="prod", skip_signed=True)
        assert [r.skipped for r in second] == [True, True, True]
        assert len(calls(log, "sign")) == 2
        for image in images:
            signer.verify_image(image.by_digest, key="prod")


def test_skip_signed_reports_missing_images_without_signing(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    image = push(repo="skip-missing")
    missing = f"{registry.host}/skip-missing@{MISSING}"
    with pytest.raises(BatchSignError) as info:
        make_signer(cosign_bin, registry, keypair).sign_images(
            [missing, image.by_digest], key="prod", skip_signed=True
        )
    assert isinstance(info.value.failures[missing], ImageNotFoundError)
    assert [(r.reference, r.skipped) for r in info.value.results] == [(image.by_digest, False)]
