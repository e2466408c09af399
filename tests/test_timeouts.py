"""Timeouts and process hygiene: the whole process group goes, nothing is left behind.

The real cosign cannot hang on demand, so the tests of our own timeout and of KeyboardInterrupt
use a tiny fake ``cosign`` (this file only): it answers ``sign --help`` with the REAL cosign's
help (capability detection stays real), then ignores SIGTERM, starts a background grandchild and
sleeps. A real stall is also produced with the real cosign behind the fault proxy.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cosign_signer import CosignTimeoutError, SignResult, _process
from tests.helpers import make_signer
from tests.infra import procfs
from tests.infra.fault_proxy import WRITES, FaultProxy
from tests.infra.images import Pusher
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair

GRACE = 0.5  # seconds between SIGTERM and SIGKILL in these tests (the library's default is 3)


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_process, "GRACE_SECONDS", GRACE)


class HangingCosign:
    """A fake cosign that hangs and ignores SIGTERM; it writes what it saw into ``state``."""

    def __init__(self, tmp_path: Path, real: Path) -> None:
        self.state = tmp_path / "hang-state"
        self.state.mkdir()
        self.path = tmp_path / "cosign-hang"
        s = self.state
        self.path.write_text(
            "#!/bin/sh\n"
            f'if [ "$2" = --help ]; then exec "{real}" "$@"; fi\n'
            "trap '' TERM\n"  # only SIGKILL stops it: proves the escalation
            f'echo "$DOCKER_CONFIG" > "{s}/docker_config"\n'
            f'stat -c %a "$DOCKER_CONFIG" > "{s}/docker_config_mode"\n'
            "sleep 300 &\n"
            f'echo "$!" > "{s}/grandchild"\n'
            f'echo "$$" > "{s}/child"\n'
            f'touch "{s}/ready"\n'
            "sleep 300\n"
        )
        self.path.chmod(0o755)

    def read(self, name: str) -> str:
        return (self.state / name).read_text().strip()

    @property
    def ready(self) -> bool:
        return (self.state / "ready").exists()

    def pids(self) -> tuple[int, int]:
        return int(self.read("child")), int(self.read("grandchild"))


@pytest.fixture
def hanging(tmp_path: Path, cosign_bin: Path) -> HangingCosign:
    return HangingCosign(tmp_path, cosign_bin)


def interrupt_main_when(ready: Callable[[], bool], *, limit: float = 30.0) -> threading.Thread:
    """Send SIGINT to the main thread (a real signal: it wakes blocking waits) once ``ready()``."""
    main = threading.main_thread().ident
    assert main is not None

    def wait_and_interrupt() -> None:
        deadline = time.monotonic() + limit
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=wait_and_interrupt, daemon=True)
    thread.start()
    return thread


def assert_group_gone(child: int, grandchildren: list[int]) -> None:
    """The direct child was reaped by us; its group (grandchildren too) is dead; no zombie of ours.

    A killed grandchild is re-parented to PID 1, which reaps it (or, in a container whose PID 1
    does not reap, leaves an entry in state Z: dead, holding no resources, not ours to reap).
    """
    assert procfs.state(child) is None, f"child {child} not reaped: {procfs.state(child)}"
    deadline = time.monotonic() + 2
    while any(procfs.is_running(p) for p in grandchildren) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [p for p in grandchildren if procfs.is_running(p)], "orphaned grandchild alive"
    assert all(procfs.parent(p) in (None, 1) or procfs.state(p) is None for p in grandchildren)
    assert procfs.zombie_children() == []


@pytest.fixture
def secret_token() -> str:
    return "tok-" + secrets.token_hex(12)


def test_timeout_kills_the_group_and_carries_timeout_and_redacted_argv(
    hanging: HangingCosign,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    tmp_path: Path,
    secret_token: str,
) -> None:
    # A key path that holds a secret value: the argv in the error must show it redacted.
    key_dir = tmp_path / secret_token
    key_dir.mkdir()
    key = key_dir / "cosign.key"
    shutil.copy(keypair.key_path, key)
    signer = make_signer(
        hanging.path,
        registry,
        keypair,
        timeout=1.0,
        env_variables={"COSIGN_PASSWORD": keypair.password, "MY_API_TOKEN": secret_token},
        key_aliases={"prod": str(key)},
    )
    started = time.monotonic()
    with pytest.raises(CosignTimeoutError) as info:
        signer.sign_image(push().by_digest, key="prod")
    elapsed = time.monotonic() - started
    error = info.value
    assert error.timeout == 1.0
    assert error.transient
    assert error.returncode is None
    assert error.argv[1] == "sign"
    assert any("***" in arg for arg in error.argv), error.argv
    for text in (" ".join(error.argv), str(error), repr(error), error.stderr):
        for secret in (secret_token, keypair.password, registry.password or "-"):
            assert secret not in text
    assert "cosign did not finish within 1 s" in str(error)
    # timeout + grace (TERM is ignored) + a margin for the pre-flight and the help probe
    assert elapsed < 1.0 + GRACE + 3.0, elapsed
    child, grandchild = hanging.pids()
    assert_group_gone(child, [grandchild])
    assert hanging.read("docker_config_mode") == "700"
    assert not os.path.exists(hanging.read("docker_config"))


def test_keyboard_interrupt_stops_children_and_removes_temp_folder(
    hanging: HangingCosign, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    signer = make_signer(hanging.path, registry, keypair, timeout=60)
    images = [push().by_digest for _ in range(2)]
    interrupt_main_when(lambda: hanging.ready)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        signer.sign_images(images, key="prod")
    assert time.monotonic() - started < 10, "interrupt waited for the 60 s timeout"
    child, grandchild = hanging.pids()
    assert_group_gone(child, [grandchild])
    assert hanging.read("docker_config_mode") == "700"
    assert not os.path.exists(hanging.read("docker_config"))


def _cosign_children(binary: Path) -> list[int]:
    return [p for p in procfs.children() if procfs.cmdline(p)[:1] == [str(binary)]]


def test_keyboard_interrupt_stops_real_cosign_stalled_by_registry(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    with FaultProxy(registry.port) as proxy:
        proxy.stall(60, count=None, methods=WRITES)
        signer = make_signer(cosign_bin, registry, keypair, timeout=60, max_workers=2)
        refs = [proxy.route(push(repo=f"stall{i}").by_digest) for i in range(2)]
        seen: dict[int, str] = {}

        def stalled() -> bool:
            if proxy.count(outcome="stall") < 1:
                return False
            for pid in _cosign_children(cosign_bin):
                seen.setdefault(pid, procfs.environ(pid).get("DOCKER_CONFIG", ""))
            return bool(seen)

        interrupt_main_when(stalled)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            signer.sign_images(refs, key="prod")
        assert time.monotonic() - started < 10
    assert seen, "no cosign process was seen running"
    for pid, docker_config in seen.items():
        assert procfs.state(pid) is None, f"cosign {pid} left behind"
        assert docker_config
        assert not os.path.exists(docker_config)
    assert procfs.zombie_children() == []


def test_real_cosign_stalled_past_timeout(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher
) -> None:
    with FaultProxy(registry.port) as proxy:
        proxy.stall(60, count=None, methods=WRITES)
        signer = make_signer(cosign_bin, registry, keypair, timeout=2.0)
        ref = proxy.route(push().by_digest)
        started = time.monotonic()
        with pytest.raises(CosignTimeoutError) as info:
            signer.sign_image(ref, key="prod")
        elapsed = time.monotonic() - started
        assert proxy.count(outcome="stall") >= 1
    assert info.value.timeout == 2.0
    assert info.value.reference == ref
    assert info.value.argv[0] == str(cosign_bin)
    assert elapsed < 2.0 + GRACE + 3.0, elapsed
    assert _cosign_children(cosign_bin) == []
    assert procfs.zombie_children() == []


def test_interrupting_one_batch_leaves_another_threads_batch_running(
    hanging: HangingCosign,
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
) -> None:
    # Another thread's batch is in the middle of a real cosign run (its push held for 2 s) when
    # the main thread's batch is interrupted: only the interrupted batch's children are stopped.
    with FaultProxy(registry.port) as proxy:
        proxy.stall(2.0, count=1, methods=WRITES)
        other = make_signer(cosign_bin, registry, keypair, timeout=60)
        other_ref = proxy.route(push(repo="other").by_digest)
        outcome: list[list[SignResult]] = []
        worker = threading.Thread(
            target=lambda: outcome.append(other.sign_images([other_ref], key="prod")), daemon=True
        )
        worker.start()
        deadline = time.monotonic() + 10
        while proxy.count(outcome="stall") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        interrupt_main_when(lambda: hanging.ready)
        with pytest.raises(KeyboardInterrupt):
            make_signer(hanging.path, registry, keypair, timeout=60).sign_image(
                push().by_digest, key="prod"
            )
        worker.join(timeout=30)
    assert len(outcome) == 1, "the other thread's batch did not finish"
    (results,) = outcome
    assert [r.reference for r in results] == [other_ref]
    child, grandchild = hanging.pids()
    assert_group_gone(child, [grandchild])
