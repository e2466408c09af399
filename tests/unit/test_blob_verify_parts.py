"""Pure parts of blob signing and verification: bundle parsing, payloads, the public-key cache."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from cosign_signer.blob import default_bundle_path, parse_bundle
from cosign_signer.keys import ResolvedKey
from cosign_signer.verify import PublicKeyCache, VerifyResult, parse_payloads

SHA = hashlib.sha256(b"hello\n").digest()


def test_sigstore_bundle_format() -> None:
    document = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": "x"},
            "tlogEntries": [{"logIndex": "42", "kindVersion": {"kind": "hashedrekord"}}],
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(SHA).decode()},
            "signature": "MEUCIQ==",
        },
    }
    assert parse_bundle(document) == ("MEUCIQ==", 42, SHA.hex())
    del document["verificationMaterial"]["tlogEntries"]  # type: ignore[attr-defined]
    assert parse_bundle(document)[1] is None


def test_cosign2_old_bundle_format() -> None:
    assert parse_bundle({"base64Signature": "MEY="}) == ("MEY=", None, None)
    old = {"base64Signature": "MEY=", "rekorBundle": {"Payload": {"logIndex": 7}}}
    assert parse_bundle(old) == ("MEY=", 7, None)


@pytest.mark.parametrize("junk", [None, [], "x", {"messageSignature": {"signature": ""}}])
def test_junk_bundles_give_nothing(junk: object) -> None:
    assert parse_bundle(junk)[0] == ""


def test_default_bundle_path_is_beside_the_file(tmp_path: Path) -> None:
    assert default_bundle_path(tmp_path / "app.tar") == tmp_path / "app.tar.sigstore.json"
    assert default_bundle_path("rel.bin").is_absolute()


def test_payloads_from_cosign_verify_stdout() -> None:
    stdout = (
        '\n[{"critical":{"image":{"docker-manifest-digest":"sha256:ab"}},"optional":{"a":"1"}}]\n'
    )
    payloads = parse_payloads(stdout)
    assert payloads[0]["critical"]["image"]["docker-manifest-digest"] == "sha256:ab"
    result = VerifyResult(reference="r", digest="sha256:ab", key="prod", payloads=list(payloads))
    assert result.payloads == payloads
    assert result.annotations == ({"a": "1"},)
    assert parse_payloads("Verification for x --\nnot json\n") == ()


def test_public_key_cache_derives_once_private_files_removed_on_close() -> None:
    calls: list[int] = []

    def derive() -> str:
        calls.append(1)
        return "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"

    cache = PublicKeyCache()
    key = ResolvedKey("prod", "/keys/prod.key")
    first = cache.path_for(key, derive)
    assert cache.path_for(key, derive) == first
    assert calls == [1]
    folder = cache.folder
    assert folder is not None
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    cache.close()
    assert not os.path.exists(folder)
    assert cache.folder is None


def test_kms_keys_are_given_to_cosign_as_uri() -> None:
    cache = PublicKeyCache()

    def never() -> str:
        raise AssertionError("a KMS key needs no derivation")

    assert cache.path_for(ResolvedKey("kms", "awskms:///alias/release"), never) == (
        "awskms:///alias/release"
    )
    assert cache.folder is None
