"""Registry faults through the fault proxy, against the real cosign 2.x and 3.x.

Transient faults (429, 5xx, connection resets) are retried with backoff up to ``retries`` and only
for the references that failed; permanent ones (401) are raised after one cosign run. cosign
retries some faults itself inside one run (a 503 or a reset on its push: ~4.5 s of its own
backoff before it gives up), so the tests that need a failed cosign run on the push are few;
the others fault cosign's first request, ``GET /v2/`` (``PING``), which the pre-flight never asks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cosign_signer import RegistryAuthError, RegistryUnavailableError
from tests.helpers import make_signer, verify
from tests.infra.fault_proxy import PING, WRITES, FaultProxy
from tests.infra.images import ImageRef, Pusher, get_manifest, signature_tags
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair

BACKOFF = 0.05


class Spy:
    """A wrapper that appends each invocation's argv to a log, then execs the real cosign."""

    def __init__(self, tmp_path: Path, real: Path) -> None:
        self.log = tmp_path / "invocations.log"
        self.path = tmp_path / "cosign-spy"
        self.path.write_text(f'#!/bin/sh\necho "$*" >> "{self.log}"\nexec "{real}" "$@"\n')
        self.path.chmod(0o755)

    def signs(self) -> list[list[str]]:
        """The argv (after the binary) of every ``cosign sign`` run, help probes excluded."""
        if not self.log.exists():
            return []
        runs = [line.split() for line in self.log.read_text().splitlines()]
        return [argv for argv in runs if argv[:1] == ["sign"] and "--help" not in argv]

    def runs(self) -> int:
        return len(self.signs())

    def runs_of(self, reference: str) -> int:
        return sum(1 for argv in self.signs() if reference in argv)


@pytest.fixture
def spy(tmp_path: Path, cosign_bin: Path) -> Spy:
    return Spy(tmp_path, cosign_bin)


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    with FaultProxy(registry.port) as server:
        yield server


def signature_count(registry: RegistryServer, image: ImageRef) -> int:
    """How many signatures of ``image`` the registry holds (either generation's layout)."""
    count = 0
    for tag in signature_tags(registry.url, image.repo, image.digest, auth=registry.credentials):
        _, raw = get_manifest(registry.url, image.repo, tag, auth=registry.credentials)
        manifest = json.loads(raw)
        # 2.x: one layer per signature in the .sig manifest; 3.x: one referrer per bundle
        count += len(manifest.get("layers") or manifest.get("manifests") or [])
    return count


def _retry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "; retry " in r.getMessage()
    ]


def _assert_verifies(
    cosign_bin: Path, refs: list[str], registry: RegistryServer, keypair: KeyPair, home: Path
) -> None:
    for ref in refs:
        checked = verify(cosign_bin, ref, keypair.pub_path, registry=registry, home=home)
        assert checked.returncode == 0, checked.stderr


def test_fault_on_the_second_reference_retries_it_alone(
    cosign_bin: Path,
    spy: Spy,
    proxy: FaultProxy,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    images = [push(repo=f"mid{i}") for i in range(3)]
    refs = [proxy.route(i.by_digest) for i in images]
    # 503 to every push into mid1 during the first cosign run only: cosign signs mid0, gives up
    # on mid1 after its own retries and never reaches mid2.
    fault = proxy.respond(
        503, count=None, methods=WRITES, path_contains="/v2/mid1/", active=lambda: spy.runs() <= 1
    )
    signer = make_signer(
        spy.path, registry, keypair, retries=2, retry_backoff=BACKOFF, max_workers=1
    )
    with caplog.at_level(logging.INFO, logger="cosign_signer"):
        results = signer.sign_images(refs, key="prod")

    assert [r.reference for r in results] == refs
    assert fault.fired >= 1
    # run 1: mid0 signed, mid1 failed, mid2 not reached; run 2: mid2; run 3: mid1 again
    assert spy.runs() == 3
    assert [spy.runs_of(r) for r in refs] == [1, 2, 2], spy.signs()
    # and the registry holds one signature each (3.x would show 2 for a reference signed twice;
    # 2.x drops a second signature by the same key, so there the argv count above is the proof)
    assert [signature_count(registry, i) for i in images] == [1, 1, 1]
    (warning,) = _retry_warnings(caplog)
    assert refs[1] in warning
    assert "UNAVAILABLE: fault injected by the test proxy" in warning
    assert "retry 1 of 2" in warning
    _assert_verifies(cosign_bin, [i.by_digest for i in images], registry, keypair, tmp_path)


FaultSetup = Callable[[FaultProxy, Spy], object]

TRANSIENT: dict[str, tuple[FaultSetup, int, str]] = {
    # name: (fault, cosign runs that fail, text the retry warning must quote)
    "429-first-2-requests": (
        lambda proxy, _spy: proxy.respond(429, count=2, path=PING),
        2,
        "TOOMANYREQUESTS",
    ),
    "reset-during-first-run": (
        lambda proxy, spy: proxy.reset(count=None, path=PING, active=lambda: spy.runs() <= 1),
        1,
        "connection reset by peer",
    ),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_faults_within_budget_are_retried_then_signed(
    fault: str,
    cosign_bin: Path,
    spy: Spy,
    proxy: FaultProxy,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup, failing_runs, reason = TRANSIENT[fault]
    rule = setup(proxy, spy)
    images = [push(repo="budget") for _ in range(2)]
    refs = [proxy.route(i.by_digest) for i in images]
    # one cosign process for both references: each fault costs exactly one run
    signer = make_signer(
        spy.path, registry, keypair, retries=2, retry_backoff=BACKOFF, max_workers=1
    )
    with caplog.at_level(logging.WARNING, logger="cosign_signer"):
        results = signer.sign_images(refs, key="prod")

    assert [r.digest for r in results] == [i.digest for i in images]
    assert getattr(rule, "fired", 0) >= failing_runs
    assert spy.runs() == failing_runs + 1
    warnings = _retry_warnings(caplog)
    assert len(warnings) == failing_runs, warnings
    assert all(reason in w for w in warnings), warnings
    assert [f"retry {n} of 2" in w for n, w in enumerate(warnings, 1)] == [True] * failing_runs
    _assert_verifies(cosign_bin, [i.by_digest for i in images], registry, keypair, tmp_path)


def test_beyond_the_budget_raises_unavailable_naming_the_attempts(
    spy: Spy,
    proxy: FaultProxy,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.respond(429, count=None, path=PING)
    ref = proxy.route(push().by_digest)
    signer = make_signer(spy.path, registry, keypair, retries=2, retry_backoff=BACKOFF)
    with (
        caplog.at_level(logging.WARNING, logger="cosign_signer"),
        pytest.raises(RegistryUnavailableError) as info,
    ):
        signer.sign_image(ref, key="prod")

    error = info.value
    assert error.attempts == 3
    assert error.transient
    assert error.reference == ref
    assert "  attempts: 3" in str(error)
    assert "TOOMANYREQUESTS" in error.stderr
    assert spy.runs() == 3
    assert len(_retry_warnings(caplog)) == 2


@pytest.mark.parametrize(
    "message", ["fault injected by the test proxy", "incorrect username or password"]
)
def test_401_on_push_is_permanent_after_one_cosign_run(
    message: str,
    spy: Spy,
    proxy: FaultProxy,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.respond(401, count=None, methods=WRITES, message=message)
    ref = proxy.route(push().by_digest)
    signer = make_signer(spy.path, registry, keypair, retries=3, retry_backoff=BACKOFF)
    with (
        caplog.at_level(logging.WARNING, logger="cosign_signer"),
        pytest.raises(RegistryAuthError) as info,
    ):
        signer.sign_image(ref, key="prod")

    assert spy.runs() == 1
    assert info.value.attempts == 1
    assert not info.value.transient
    assert f"UNAUTHORIZED: {message}" in str(info.value)
    assert _retry_warnings(caplog) == []


def test_preflight_retries_transient_faults_and_stops_at_the_budget(
    cosign_bin: Path,
    spy: Spy,
    proxy: FaultProxy,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The library's own pre-flight (HEAD of the manifest) goes through the same budget.
    good = proxy.route(push(repo="pre").by_digest)
    proxy.respond(503, count=2, path_contains="/v2/pre/manifests/")
    signer = make_signer(spy.path, registry, keypair, retries=2, retry_backoff=BACKOFF)
    with caplog.at_level(logging.WARNING, logger="cosign_signer"):
        assert signer.sign_image(good, key="prod").reference == good
    assert sum("pre-flight of" in w for w in _retry_warnings(caplog)) == 2
    assert spy.runs() == 1

    proxy.clear()
    bad = proxy.route(push(repo="pre2").by_digest)
    proxy.respond(503, count=None, path_contains="/v2/pre2/manifests/")
    with pytest.raises(RegistryUnavailableError) as info:
        signer.sign_image(bad, key="prod")
    assert info.value.attempts == 3
    assert spy.runs() == 1  # cosign never ran for it
