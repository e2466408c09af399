"""Signer.plan, sign_images(upload=False) and sign_images(recursive=True), real cosign 2.x/3.x."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosign_signer import CosignCapabilities, SigningKeyError, VerificationError
from tests.helpers import make_signer, verify
from tests.helpers import spy_binary as spy
from tests.infra.images import Pusher, push_index, signature_tags
from tests.infra.registry import RegistryServer, free_port
from tests.infra.tools import KeyPair


def sign_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("sign --key")]


@pytest.mark.parametrize("upload", [True, False])
def test_plan_is_exactly_what_sign_images_runs(
    upload: bool,
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    tmp_path: Path,
) -> None:
    binary, log = spy(tmp_path, cosign_bin)
    images = [push(repo="planned") for _ in range(5)]
    refs = [i.by_digest for i in images] + [images[1].by_digest]
    signer = make_signer(binary, registry, keypair, max_workers=2)
    planned = signer.plan(refs, key="prod", annotations={"team": "x"}, upload=upload)
    assert len(planned) == 2
    assert all(p.env_names == ("COSIGN_PASSWORD", "DOCKER_CONFIG") for p in planned)
    assert not any(p.unresolved for p in planned)
    # the repeated reference is dropped; 5 digests over 2 workers: 3 + 2
    assert [p.references for p in planned] == [tuple(refs[:3]), tuple(refs[3:5])]
    assert not log.exists() or not sign_lines(log)  # planning signed nothing
    signer.sign_images(refs, key="prod", annotations={"team": "x"}, upload=upload)
    ran = sorted(sign_lines(log))
    assert ran == sorted(" ".join(p.argv[1:]) for p in planned)
    tags = [
        signature_tags(registry.url, "planned", i.digest, auth=registry.credentials) for i in images
    ]
    assert all(tags) if upload else not any(tags)


def test_plan_starts_no_process_and_uses_no_network(
    cosign_bin: Path, keypair: KeyPair, tmp_path: Path
) -> None:
    binary, log = spy(tmp_path, cosign_bin)
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    refs = [f"{host}/app:1.2", f"{host}/app@sha256:{'ab' * 32}"]
    signer = make_signer(binary, None, keypair, max_workers=1)
    caps = CosignCapabilities.from_help("  --key='':\n  --tlog-upload=true:")
    (planned,) = signer.plan(refs, key="prod", capabilities=caps)
    assert not log.exists()  # not even `cosign sign --help`
    assert planned.argv[0] == str(binary)
    assert planned.argv[-2:] == tuple(refs)
    assert planned.unresolved == (refs[0],)
    assert planned.env_names == ("COSIGN_PASSWORD",)
    # without capabilities, the only process is the help probe sign_images runs first too
    signer.plan(refs, key="prod")
    assert log.read_text().splitlines() == ["sign --help"]


def test_upload_false_proves_the_key_and_writes_nothing(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    image = push(repo="dry")
    signer = make_signer(cosign_bin, registry, keypair)
    (result,) = signer.sign_images([image.by_digest], key="prod", upload=False)
    assert result.digest == image.digest
    assert signature_tags(registry.url, "dry", image.digest, auth=registry.credentials) == []
    with pytest.raises(VerificationError):
        signer.verify_image(image.by_digest, key="prod")
    wrong = make_signer(
        cosign_bin, registry, keypair, env_variables={"COSIGN_PASSWORD": "wrong-pw-123"}
    )
    with pytest.raises(SigningKeyError, match="decrypt"):
        wrong.sign_image(image.by_digest, key="prod")


def test_recursive_signs_the_index_and_each_child(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    children = [push(repo="multi") for _ in range(2)]
    index_digest = push_index(
        registry.url, "multi", "1.0", [c.digest for c in children], auth=registry.credentials
    )
    signer = make_signer(cosign_bin, registry, keypair)
    (result,) = signer.sign_images([f"{registry.host}/multi:1.0"], key="prod", recursive=True)
    assert result.digest == index_digest
    for digest in (index_digest, *(c.digest for c in children)):
        checked = verify(
            cosign_bin, f"{registry.host}/multi@{digest}", keypair.pub_path,
            registry=registry, home=tmp_path,
        )  # fmt: skip
        assert checked.returncode == 0, (digest, checked.stderr)
    # without --recursive only the index is signed
    others = [push(repo="multi") for _ in range(2)]
    flat = push_index(
        registry.url, "multi", None, [c.digest for c in others], auth=registry.credentials
    )
    signer.sign_image(f"{registry.host}/multi@{flat}", key="prod")
    for child in others:
        assert signature_tags(registry.url, "multi", child.digest, auth=registry.credentials) == []
