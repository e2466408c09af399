"""CosignCommandBuilder beyond `sign`: sign-blob, verify, public-key, --upload=false, --recursive."""

from __future__ import annotations

import os

import pytest

from cosign_signer import Config, CosignCapabilities, CosignCommandBuilder, InvalidReferenceError
from cosign_signer.keys import ResolvedKey

# Trimmed `cosign sign --help` / `cosign sign-blob --help` of each generation.
SIGN_2 = "  --key='':\n  --tlog-upload=true:\n  --upload=true:\n  -r, --recursive=false:\n  --allow-http-registry=false:\n  -t, --timeout duration"
SIGN_3 = "  --key='':\n  --use-signing-config=true:\n  --bundle='':\n  --upload=true:\n  -r, --recursive=false:\n  -t, --timeout duration"
BLOB_2 = "  --key='':\n  --bundle='':\n  --new-bundle-format=false:\n  --tlog-upload=true:\n  -t, --timeout duration"
BLOB_2_OLD = "  --key='':\n  --bundle='':\n  --tlog-upload=true:\n  -t, --timeout duration"
BLOB_3 = "  --key='':\n  --bundle='':\n  --use-signing-config=true:\n  --signing-config='':\n  -t, --timeout duration"
REF = "127.0.0.1:5000/app@sha256:" + "ab" * 32
KEY = ResolvedKey(alias="prod", reference="/keys/prod.key")
CONFIG = {"timeout": 60, "env_variables": {"COSIGN_PASSWORD": "key-pw"}}


def builder(help_text: str, **config: object) -> CosignCommandBuilder:
    return CosignCommandBuilder(
        Config.from_dict({**CONFIG, **config}), CosignCapabilities.from_help(help_text)
    )


def test_sign_blob_cosign2_asks_for_the_sigstore_bundle_format() -> None:
    command = builder(BLOB_2).sign_blob(
        KEY, "/data/app.tar", bundle_path="/data/app.tar.sigstore.json"
    )
    assert command.argv == (
        "cosign", "sign-blob", "--key", "/keys/prod.key", "-y", "--tlog-upload=false",
        "--new-bundle-format=true", "--bundle=/data/app.tar.sigstore.json", "--timeout=55s",
        "--", "/data/app.tar",
    )  # fmt: skip
    assert command.env == {"COSIGN_PASSWORD": "key-pw"}
    assert "key-pw" not in " ".join(command.argv)


def test_sign_blob_older_cosign2_without_new_bundle_format() -> None:
    argv = builder(BLOB_2_OLD).sign_blob(KEY, "/f", bundle_path="/f.b").argv
    assert not any(a.startswith("--new-bundle-format") for a in argv)


def test_sign_blob_cosign3_disables_signing_config() -> None:
    argv = builder(BLOB_3).sign_blob(KEY, "/f", bundle_path="/f.sigstore.json").argv
    assert argv[5:8] == (
        "--use-signing-config=false",
        "--tlog-upload=false",
        "--bundle=/f.sigstore.json",
    )
    assert "--new-bundle-format=true" not in argv


def test_sign_blob_cosign2_with_rekor() -> None:
    argv = (
        builder(BLOB_2, upload_tlog=True, rekor_url="http://127.0.0.1:3000")
        .sign_blob(KEY, "/f", bundle_path="/f.b")
        .argv
    )
    assert "--tlog-upload=true" in argv
    assert "--rekor-url=http://127.0.0.1:3000" in argv


@pytest.mark.parametrize(("path", "bundle"), [("-f", "/b"), ("f", "/b"), ("/f", "b.json")])
def test_sign_blob_paths_must_be_absolute(path: str, bundle: str) -> None:
    # cosign turns "-f" into "--f" even after "--" (measured on 2.5 and 3.1).
    with pytest.raises(ValueError, match="absolute"):
        builder(BLOB_2).sign_blob(KEY, path, bundle_path=bundle)


@pytest.mark.parametrize("help_text", [SIGN_2, SIGN_3])
def test_verify_is_offline_and_by_digest(help_text: str) -> None:
    command = builder(help_text, allow_http_registry=True).verify(
        "/tmp/k.pub", REF, docker_config_dir="/tmp/dc"
    )
    assert command.argv[:5] == (
        "cosign",
        "verify",
        "--key",
        "/tmp/k.pub",
        "--insecure-ignore-tlog=true",
    )
    assert command.argv[-2:] == ("--", REF)
    assert command.env == {"COSIGN_PASSWORD": "key-pw", "DOCKER_CONFIG": "/tmp/dc"}
    with pytest.raises(InvalidReferenceError):
        builder(help_text).verify("/tmp/k.pub", "127.0.0.1:5000/app:latest")


def test_public_key_command() -> None:
    command = builder(SIGN_2).public_key(KEY, binary="/usr/bin/cosign")
    assert command.argv == (
        "/usr/bin/cosign",
        "public-key",
        "--key",
        "/keys/prod.key",
        "--timeout=55s",
    )
    assert command.env == {"COSIGN_PASSWORD": "key-pw"}


def test_sign_upload_false_cosign2() -> None:
    argv = builder(SIGN_2).sign(KEY, [REF], upload=False).argv
    assert "--upload=false" in argv
    assert not any(a.startswith("--bundle") for a in argv)


def test_sign_upload_false_cosign3_writes_bundle_to_devnull() -> None:
    argv = builder(SIGN_3).sign(KEY, [REF], upload=False).argv
    assert "--upload=false" in argv
    assert f"--bundle={os.devnull}" in argv


@pytest.mark.parametrize("help_text", [SIGN_2, SIGN_3])
def test_sign_defaults_unchanged_and_recursive(help_text: str) -> None:
    plain = builder(help_text).sign(KEY, [REF]).argv
    assert not any(a.startswith(("--upload", "--recursive", "--bundle")) for a in plain)
    recursive = builder(help_text).sign(KEY, [REF], recursive=True).argv
    assert recursive[recursive.index("--") - 1] == "--recursive"
