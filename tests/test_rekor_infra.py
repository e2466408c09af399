"""Smoke tests for the local Rekor logs (tests/infra/rekor.py): they start, answer, and take real
uploads from real cosign, one per supported cell (cosign 2 -> v1, cosign 3 -> v1, cosign 3 -> v2),
each verified with the log's key and rejected with another key.

Needs ``scripts/provision.sh`` (cosign, registry) and ``scripts/provision-rekor.sh`` (Rekor).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.infra.images import push_image
from tests.infra.registry import RegistryServer
from tests.infra.rekor import (
    RekorStartError,
    RekorTools,
    RekorToolsNotProvisionedError,
    RekorV1Server,
    RekorV2Server,
    find_rekor_tools,
    http_get,
)
from tests.infra.tools import KeyPair, Tools, cosign_environ

REPO_ROOT = Path(__file__).resolve().parents[1]
COSIGN2_INDEX = re.compile(r"^tlog entry created with index: (\d+)$", re.MULTILINE)


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, keypair: KeyPair) -> dict[str, str]:
    return cosign_environ(home=tmp_path / "home", password=keypair.password)


@pytest.fixture
def fresh_image(open_registry: RegistryServer) -> str:
    digest = push_image(open_registry.url, "rekor-smoke")
    return f"{open_registry.host}/rekor-smoke@{digest}"


def cosign(binary: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def bundle_tlog_entry(bundle: Path) -> dict[str, Any]:
    entries: list[dict[str, Any]] = json.loads(bundle.read_text())["verificationMaterial"][
        "tlogEntries"
    ]
    assert len(entries) == 1
    return entries[0]


def bundle_log_index(entry: dict[str, Any]) -> int:
    """``logIndex`` is a JSON string, left out when it is 0 (protobuf JSON drops zero values)."""
    return int(entry.get("logIndex", "0"))


# ---- tools --------------------------------------------------------------------------------------


def test_missing_tools_name_the_provisioning_script(tmp_path: Path) -> None:
    with pytest.raises(RekorToolsNotProvisionedError, match=r"scripts/provision-rekor\.sh"):
        find_rekor_tools(tmp_path)


# ---- the logs answer ----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.rekor
def test_rekor_v1_answers(rekor_v1: RekorV1Server) -> None:
    info = rekor_v1.log_info()
    assert int(info["treeID"]) == rekor_v1.tree_id
    assert isinstance(info["treeSize"], int)
    assert info["signedTreeHead"].startswith(f"127.0.0.1 - {rekor_v1.tree_id}\n")
    status, body = http_get(f"{rekor_v1.url}/api/v1/log/publicKey")
    assert status == 200
    assert body == rekor_v1.public_key_pem
    assert rekor_v1.public_key_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


@pytest.mark.integration
@pytest.mark.rekor
def test_rekor_v2_serves_its_checkpoint(rekor_v2: RekorV2Server) -> None:
    assert http_get(f"{rekor_v2.url}/healthz")[0] == 200
    status, body = http_get(f"{rekor_v2.tiles_url}/checkpoint")
    assert status == 200
    origin, size, _root_hash, blank, signature = body.decode().splitlines()[:5]
    assert origin == rekor_v2.origin == "127.0.0.1"
    assert int(size) >= 0
    assert blank == ""
    assert signature.startswith(f"\N{EM DASH} {rekor_v2.origin} ")
    assert rekor_v2.public_key_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


@pytest.mark.integration
@pytest.mark.rekor
def test_a_process_dying_at_start_up_reports_its_log(rekor_tools: RekorTools) -> None:
    server = RekorV2Server(rekor_tools, checkpoint_interval="not-a-duration")
    with pytest.raises(RekorStartError, match=r"(?s)rekor-tiles exited with \d+.*not-a-duration"):
        server.start()
    assert not server.running
    assert not server.workdir.exists()


@pytest.mark.integration
@pytest.mark.rekor
def test_a_v1_process_dying_at_start_up_stops_the_others(rekor_tools: RekorTools) -> None:
    server = RekorV1Server(rekor_tools, sequencer_interval="not-a-duration")
    with pytest.raises(
        RekorStartError, match=r"(?s)trillian_log_signer exited with \d+.*not-a-duration"
    ):
        server.start()
    assert not server.running
    assert not server.workdir.exists()


@pytest.mark.integration
@pytest.mark.rekor
def test_missing_trillian_schema_is_reported(rekor_tools: RekorTools, tmp_path: Path) -> None:
    bad = tmp_path / "schema.sql"
    bad.write_text("CREATE TABLE broken (;\n")
    server = RekorV1Server(replace(rekor_tools, trillian_schema=bad))
    with pytest.raises(RekorStartError, match="loading Trillian's schema failed"):
        server.start()
    assert not server.workdir.exists()


# ---- real uploads, one per cell -----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.rekor
def test_cosign2_uploads_to_rekor_v1(
    *,
    tools: Tools,
    keypair: KeyPair,
    rekor_v1: RekorV1Server,
    fresh_image: str,
    env: dict[str, str],
    unrelated_log_key: Path,
) -> None:
    c2 = tools.cosign["2"]
    signed = cosign(c2, "sign", "--key", str(keypair.key_path), "--rekor-url", rekor_v1.url,
                    "--tlog-upload=true", "-y", fresh_image, env=env)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    match = COSIGN2_INDEX.search(signed.stderr)
    assert match, signed.stderr
    index = int(match.group(1))
    assert rekor_v1.log_info()["treeSize"] == index + 1

    status, body = http_get(f"{rekor_v1.url}/api/v1/log/entries?logIndex={index}")
    assert status == 200
    (entry,) = json.loads(body).values()
    assert entry["logIndex"] == index
    assert '"kind":"hashedrekord"' in base64.b64decode(entry["body"]).decode()

    verify = ["verify", "--key", str(keypair.pub_path), "--rekor-url", rekor_v1.url, fresh_image]
    good = cosign(c2, *verify, env={**env, **rekor_v1.cosign2_env()})
    assert good.returncode == 0, good.stderr
    wrong = cosign(c2, *verify, env={**env, "SIGSTORE_REKOR_PUBLIC_KEY": str(unrelated_log_key)})
    assert wrong.returncode != 0
    assert "rekor log public key not found for payload" in wrong.stderr


@pytest.mark.integration
@pytest.mark.rekor
def test_cosign2_cannot_upload_to_rekor_v2(
    tools: Tools, keypair: KeyPair, rekor_v2: RekorV2Server, fresh_image: str, env: dict[str, str]
) -> None:
    signed = cosign(tools.cosign["2"], "sign", "--key", str(keypair.key_path),
                    "--rekor-url", rekor_v2.url, "-y", fresh_image, env=env)  # fmt: skip
    assert signed.returncode == 1
    assert "[POST /api/v1/log/entries][404]" in signed.stderr


def _cosign3_round_trip(
    *,
    c3: Path,
    server: RekorV1Server | RekorV2Server,
    keypair: KeyPair,
    image: str,
    env: dict[str, str],
    tmp_path: Path,
    unrelated_log_key: Path,
) -> dict[str, Any]:
    config = server.write_cosign3_config(c3, tmp_path / "cosign3", env=env)
    bundle = tmp_path / "bundle.json"
    signed = cosign(c3, "sign", "--key", str(keypair.key_path),
                    "--signing-config", str(config.signing_config),
                    "--trusted-root", str(config.trusted_root),
                    "--bundle", str(bundle), "-y", image, env=env)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert "tlog entry created" not in signed.stderr  # cosign 3 prints no index
    entry = bundle_tlog_entry(bundle)

    verify = ["verify", "--key", str(keypair.pub_path), "--trusted-root"]
    good = cosign(c3, *verify, str(config.trusted_root), image, env=env)
    assert good.returncode == 0, good.stderr
    wrong_root = tmp_path / "wrong-trusted-root.json"
    made = cosign(c3, *server.cosign3_trusted_root_args(wrong_root, public_key=unrelated_log_key),
                  env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    wrong = cosign(c3, *verify, str(wrong_root), image, env=env)
    assert wrong.returncode != 0
    assert "failed to verify log inclusion" in wrong.stderr
    return entry


@pytest.mark.integration
@pytest.mark.rekor
def test_cosign3_uploads_to_rekor_v1(
    *,
    tools: Tools,
    keypair: KeyPair,
    rekor_v1: RekorV1Server,
    fresh_image: str,
    env: dict[str, str],
    tmp_path: Path,
    unrelated_log_key: Path,
) -> None:
    entry = _cosign3_round_trip(
        c3=tools.cosign["3"],
        server=rekor_v1,
        keypair=keypair,
        image=fresh_image,
        env=env,
        tmp_path=tmp_path,
        unrelated_log_key=unrelated_log_key,
    )
    index = bundle_log_index(entry)
    assert rekor_v1.log_info()["treeSize"] == index + 1
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert "integratedTime" in entry
    assert "inclusionPromise" in entry
    status, _ = http_get(f"{rekor_v1.url}/api/v1/log/entries?logIndex={index}")
    assert status == 200


@pytest.mark.integration
@pytest.mark.rekor
def test_cosign3_uploads_to_rekor_v2(
    *,
    tools: Tools,
    keypair: KeyPair,
    rekor_v2: RekorV2Server,
    fresh_image: str,
    env: dict[str, str],
    tmp_path: Path,
    unrelated_log_key: Path,
) -> None:
    entry = _cosign3_round_trip(
        c3=tools.cosign["3"],
        server=rekor_v2,
        keypair=keypair,
        image=fresh_image,
        env=env,
        tmp_path=tmp_path,
        unrelated_log_key=unrelated_log_key,
    )
    index = bundle_log_index(entry)
    assert entry["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}
    assert "integratedTime" not in entry
    proof = entry["inclusionProof"]
    assert int(proof["treeSize"]) >= index + 1
    assert proof["checkpoint"]["envelope"].startswith(f"{rekor_v2.origin}\n")
    status, body = http_get(f"{rekor_v2.tiles_url}/checkpoint")
    assert status == 200
    assert int(body.decode().splitlines()[1]) >= index + 1


@pytest.mark.integration
@pytest.mark.rekor
@pytest.mark.parametrize("version", [1, 2])
def test_cosign3_bundle_leaves_out_log_index_zero(
    version: int,
    *,
    tools: Tools,
    rekor_tools: RekorTools,
    keypair: KeyPair,
    fresh_image: str,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The first entry of a fresh log has index 0, and the bundle has no ``logIndex`` key."""
    server: RekorV1Server | RekorV2Server = (
        RekorV1Server(rekor_tools) if version == 1 else RekorV2Server(rekor_tools)
    )
    with server:
        config = server.write_cosign3_config(tools.cosign["3"], tmp_path / "cosign3", env=env)
        bundle = tmp_path / "bundle.json"
        signed = cosign(tools.cosign["3"], "sign", "--key", str(keypair.key_path),
                        "--signing-config", str(config.signing_config),
                        "--trusted-root", str(config.trusted_root),
                        "--bundle", str(bundle), "-y", fresh_image, env=env)  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        entry = bundle_tlog_entry(bundle)
        assert "logIndex" not in entry
        assert "logIndex" not in entry["inclusionProof"]
        assert entry["inclusionProof"]["treeSize"] == "1"
