"""Uploading signing records to a REAL Rekor: v1 (rekor-server + Trillian) and v2 (rekor-tiles).

| | Rekor v1 | Rekor v2 |
|---|---|---|
| cosign 2.x | ``--rekor-url``, ``--tlog-upload=true`` | not supported: ConfigError |
| cosign 3.x | signing config, api-version 1 | signing config, api-version 2 |
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cosign_signer import BatchSignError, ConfigError, Signer, SignResult, TransparencyLogError
from tests.helpers import make_signer
from tests.infra.images import Pusher
from tests.infra.registry import RegistryServer
from tests.infra.rekor import RekorTools, RekorV1Server, RekorV2Server
from tests.infra.tools import KeyPair, Tools, cosign_environ

pytestmark = pytest.mark.rekor

CELLS = [("2", "v1"), ("3", "v1"), ("3", "v2")]


@pytest.fixture
def log_of(
    rekor_v1: RekorV1Server, rekor_v2: RekorV2Server
) -> dict[str, RekorV1Server | RekorV2Server]:
    return {"v1": rekor_v1, "v2": rekor_v2}


def tlog_signer(
    cosign: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    log: RekorV1Server | RekorV2Server,
    **extra: Any,
) -> Signer:
    options: dict[str, Any] = {
        "upload_tlog": True,
        "rekor_url": log.url,
        "rekor_public_key": str(log.public_key_path),
        **extra,
    }
    return make_signer(cosign, registry, keypair, **options)


def cosign_verify_with_tlog(
    tools: Tools,
    gen: str,
    ref: str,
    keypair: KeyPair,
    log: RekorV1Server | RekorV2Server,
    registry: RegistryServer,
    home: Path,
    *,
    log_key: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``cosign verify`` WITH transparency-log verification against ``log``'s key (or another)."""
    key = log_key if log_key is not None else log.public_key_path
    env = cosign_environ(
        home=home, docker_config=registry.write_docker_config(home / f"dc-{gen}-{key.stem}")
    )
    argv = [str(tools.cosign[gen]), "verify", "--key", str(keypair.pub_path)]
    if gen == "2":
        env["SIGSTORE_REKOR_PUBLIC_KEY"] = str(key)
        argv += ["--rekor-url", log.url]
    else:
        root = home / f"trusted-root-{key.stem}.json"
        subprocess.run(
            [str(tools.cosign["3"]), *log.cosign3_trusted_root_args(root, public_key=key)],
            env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        argv += ["--trusted-root", str(root)]
    return subprocess.run(
        [*argv, ref], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def entry_in_log(log: RekorV1Server | RekorV2Server, index: int) -> bool:
    """The log itself holds entry ``index``: v1's entries API; v2's signed checkpoint size."""
    if isinstance(log, RekorV1Server):
        with urllib.request.urlopen(
            f"{log.url}/api/v1/log/entries?logIndex={index}", timeout=10
        ) as answer:
            (entry,) = json.loads(answer.read()).values()
        return bool(entry["logIndex"] == index)
    size = int(log.checkpoint().splitlines()[1])
    return size > index


@pytest.mark.parametrize(("gen", "version"), CELLS, ids=[f"cosign{g}-rekor{v}" for g, v in CELLS])
def test_batch_uploads_and_verifies_with_tlog(
    gen: str,
    version: str,
    tools: Tools,
    registry: RegistryServer,
    keypair: KeyPair,
    log_of: dict[str, RekorV1Server | RekorV2Server],
    push: Pusher,
    tmp_path: Path,
    unrelated_log_key: Path,
) -> None:
    log = log_of[version]
    images = [push(repo=f"tlog{gen}{version}") for _ in range(3)]
    with tlog_signer(tools.cosign[gen], registry, keypair, log) as signer:
        results = signer.sign_images([i.by_digest for i in images], key="prod")
    indices = [r.tlog_index for r in results]
    assert all(isinstance(i, int) for i in indices), indices
    assert len(set(indices)) == 3
    for result in results:
        assert result.tlog_index is not None
        assert entry_in_log(log, result.tlog_index)
        ok = cosign_verify_with_tlog(tools, gen, result.reference, keypair, log, registry, tmp_path)
        assert ok.returncode == 0, ok.stderr
    bad = cosign_verify_with_tlog(
        tools,
        gen,
        results[0].reference,
        keypair,
        log,
        registry,
        tmp_path,
        log_key=unrelated_log_key,
    )
    assert bad.returncode != 0


def test_cosign2_cannot_upload_to_rekor_v2(
    tools: Tools, registry: RegistryServer, keypair: KeyPair, rekor_v2: RekorV2Server, push: Pusher
) -> None:
    signer = tlog_signer(tools.cosign["2"], registry, keypair, rekor_v2)
    with pytest.raises(ConfigError, match=r"cosign 2\.x uploads to Rekor v1 only"):
        signer.sign_image(push().by_digest, key="prod")


def test_cosign3_needs_the_log_public_key(
    tools: Tools, registry: RegistryServer, keypair: KeyPair, rekor_v2: RekorV2Server, push: Pusher
) -> None:
    signer = make_signer(
        tools.cosign["3"], registry, keypair, upload_tlog=True, rekor_url=rekor_v2.url
    )
    with pytest.raises(ConfigError, match="rekor_public_key"):
        signer.sign_image(push().by_digest, key="prod")


def test_log_key_as_pem_text_and_files_removed_on_close(
    tools: Tools, registry: RegistryServer, keypair: KeyPair, rekor_v2: RekorV2Server, push: Pusher
) -> None:
    signer = make_signer(
        tools.cosign["3"], registry, keypair, upload_tlog=True, rekor_url=rekor_v2.url,
        rekor_public_key=rekor_v2.public_key_pem.decode(), rekor_api_version=2,
    )  # fmt: skip
    result = signer.sign_image(push().by_digest, key="prod")
    assert result.tlog_index is not None
    folder = signer._tlog_files._folder
    assert folder is not None
    assert Path(folder).stat().st_mode & 0o777 == 0o700
    signer.close()
    assert not Path(folder).exists()


class ConnectionCounter:
    """A TCP listener that only counts who connects (stands in for a Rekor that must stay unused)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def counter() -> Iterator[ConnectionCounter]:
    listener = ConnectionCounter()
    yield listener
    listener.close()


def test_upload_tlog_false_never_contacts_rekor(
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    counter: ConnectionCounter,
) -> None:
    signer = make_signer(cosign_bin, registry, keypair, upload_tlog=False, rekor_url=counter.url)
    results = signer.sign_images([push().by_digest for _ in range(3)], key="prod")
    assert [r.tlog_index for r in results] == [None, None, None]
    assert counter.connections == 0


@pytest.mark.parametrize(
    ("gen", "version"), [("2", "v1"), ("3", "v2")], ids=["cosign2-rekorv1", "cosign3-rekorv2"]
)
def test_rekor_stopped_mid_run(
    gen: str,
    version: str,
    tools: Tools,
    rekor_tools: RekorTools,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RekorV1Server(rekor_tools) if version == "v1" else RekorV2Server(rekor_tools)
    with server:
        signer = tlog_signer(tools.cosign[gen], registry, keypair, server, retries=1)
        first = signer.sign_image(push().by_digest, key="prod")
        assert first.tlog_index is not None
        server.stop()
        refs = [push().by_digest for _ in range(2)]
        with pytest.raises(BatchSignError) as info:
            signer.sign_images(refs, key="prod")
    assert info.value.results == ()
    for ref in refs:
        error = info.value.failures[ref]
        assert isinstance(error, TransparencyLogError), error
        assert error.attempts == 2
    assert "retry 1 of 1" in caplog.text
    signer.close()


def test_results_without_tlog_have_no_index(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    result = make_signer(cosign_bin, registry, keypair).sign_image(push().by_digest, key="prod")
    assert result == SignResult(
        reference=result.reference, digest=result.digest, key="prod", tlog_index=None
    )


@pytest.mark.parametrize(
    ("gen", "version"), [("2", "v1"), ("3", "v2")], ids=["cosign2-rekorv1", "cosign3-rekorv2"]
)
def test_blob_upload_reports_its_log_index(
    gen: str,
    version: str,
    tools: Tools,
    keypair: KeyPair,
    log_of: dict[str, RekorV1Server | RekorV2Server],
    tmp_path: Path,
) -> None:
    log = log_of[version]
    artifact = tmp_path / "release.tar"
    artifact.write_bytes(b"release artifact " + gen.encode())
    with tlog_signer(tools.cosign[gen], None, keypair, log) as signer:
        result = signer.sign_blob(artifact, key="prod")
    assert result.tlog_index is not None
    assert entry_in_log(log, result.tlog_index)


@pytest.mark.parametrize("gen", ["2", "3"])
def test_plan_shows_the_tlog_commands(
    gen: str, tools: Tools, keypair: KeyPair, rekor_v1: RekorV1Server
) -> None:
    refs = [f"127.0.0.1:5000/app@sha256:{c * 64}" for c in "abc"]
    signer = tlog_signer(
        tools.cosign[gen], None, keypair, rekor_v1, rekor_api_version=1, max_workers=2
    )
    commands = signer.plan(refs, key="prod")
    if gen == "2":
        assert len(commands) == 2  # many references per process
        assert f"--rekor-url={rekor_v1.url}" in commands[0].argv
        assert "SIGSTORE_REKOR_PUBLIC_KEY" in commands[0].env_names
    else:
        assert len(commands) == 3  # one bundle, so one reference, per process
        assert any(a.startswith("--signing-config=") for a in commands[0].argv)
        assert any(a.startswith("--bundle=") for a in commands[0].argv)
        assert not any(a.startswith(("--rekor-url", "--tlog-upload")) for a in commands[0].argv)
