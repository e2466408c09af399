"""Signer.sign_blob against the real cosign 2.x and 3.x; bundles checked with `cosign verify-blob`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from cosign_signer import ArtifactNotFoundError, SigningKeyError
from tests.helpers import make_signer
from tests.helpers import spy_binary as spy
from tests.infra.tools import KeyPair, Tools, cosign_environ

# cosign 2.5's verify-blob fetches the public TUF root for a Sigstore-format bundle unless given a
# trusted root; an empty one is enough for key-based verification without a transparency log.
EMPTY_TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}


def verify_blob(
    cosign: Path, file: Path, bundle: Path, pub: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    trusted_root = home / "trusted-root.json"
    trusted_root.write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    argv = [str(cosign), "verify-blob", "--key", str(pub), "--bundle", str(bundle)]
    argv += ["--insecure-ignore-tlog", "--trusted-root", str(trusted_root), str(file)]
    return subprocess.run(
        argv, env=cosign_environ(home=home), capture_output=True, text=True, timeout=60, check=False
    )


def test_sign_blob_writes_a_bundle_both_generations_verify(
    cosign_bin: Path, keypair: KeyPair, tools: Tools, tmp_path: Path
) -> None:
    file = tmp_path / "release.tar"
    file.write_bytes(os.urandom(4096))
    result = make_signer(cosign_bin, None, keypair).sign_blob(file, key="prod")
    assert result.path == file
    assert result.bundle_path == tmp_path / "release.tar.sigstore.json"
    assert result.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert result.tlog_index is None
    bundle = json.loads(result.bundle_path.read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    assert bundle["messageSignature"]["signature"] == result.signature
    for gen in ("2", "3"):  # whichever signed, both read the Sigstore bundle
        checked = verify_blob(
            tools.cosign[gen], file, result.bundle_path, keypair.pub_path, tmp_path
        )
        assert checked.returncode == 0, (gen, checked.stderr)
    file.write_bytes(file.read_bytes() + b"tampered")
    checked = verify_blob(cosign_bin, file, result.bundle_path, keypair.pub_path, tmp_path)
    assert checked.returncode != 0
    assert "invalid signature" in checked.stderr


def test_sign_blob_custom_bundle_path_and_relative_file(
    cosign_bin: Path, keypair: KeyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("-dash.txt").write_text("a file whose name cosign would take for a flag\n")
    (tmp_path / "out").mkdir()
    result = make_signer(cosign_bin, None, keypair).sign_blob(
        "-dash.txt", key="prod", bundle_path="out/b.json"
    )
    assert result.path == tmp_path / "-dash.txt"
    assert result.bundle_path == tmp_path / "out" / "b.json"
    checked = verify_blob(cosign_bin, result.path, result.bundle_path, keypair.pub_path, tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_unusable_file_or_bundle_folder_fails_before_cosign(
    cosign_bin: Path, keypair: KeyPair, tmp_path: Path
) -> None:
    binary, log = spy(tmp_path, cosign_bin)
    signer = make_signer(binary, None, keypair)
    file = tmp_path / "ok.txt"
    file.write_text("x")
    cases = [
        (tmp_path / "missing.txt", None, "no such file"),
        (tmp_path, None, "is a directory"),
        (file / "below-a-file", None, "cannot read it: Not a directory"),
        (file, tmp_path / "nowhere" / "b.json", "does not exist"),
        (file, file, "is the file being signed"),
    ]
    for path, bundle, reason in cases:
        with pytest.raises(ArtifactNotFoundError, match=reason) as info:
            signer.sign_blob(path, key="prod", bundle_path=bundle)
        assert info.value.path in (str(path), str(bundle))
    assert not log.exists() or "sign-blob --key" not in log.read_text()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(cosign_bin: Path, keypair: KeyPair, tmp_path: Path) -> None:
    file = tmp_path / "secret.bin"
    file.write_text("x")
    file.chmod(0)
    with pytest.raises(ArtifactNotFoundError, match="permission denied"):
        make_signer(cosign_bin, None, keypair).sign_blob(file, key="prod")


def test_wrong_key_password_is_a_signing_key_error(
    cosign_bin: Path, keypair: KeyPair, tmp_path: Path
) -> None:
    file = tmp_path / "f.txt"
    file.write_text("x")
    token = "tok-" + os.urandom(8).hex()  # a secret value that also appears in the key's path
    (tmp_path / token).mkdir()
    key = tmp_path / token / "cosign.key"
    key.write_bytes(keypair.key_path.read_bytes())
    signer = make_signer(
        cosign_bin, None, keypair, key_aliases={"prod": str(key)},
        env_variables={"COSIGN_PASSWORD": "wrong-pw-123", "MY_API_TOKEN": token},
    )  # fmt: skip
    with pytest.raises(SigningKeyError) as info:
        signer.sign_blob(file, key="prod")
    assert "decrypt" in str(info.value)
    assert info.value.argv[1] == "sign-blob"
    assert info.value.argv[3].endswith("/***/cosign.key")
    assert info.value.reference == str(file)
    for text in (str(info.value), " ".join(info.value.argv)):
        assert "wrong-pw-123" not in text
        assert token not in text
    assert not (tmp_path / "f.txt.sigstore.json").exists()
