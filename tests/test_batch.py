"""Batch signing on the real cosign 2.x and 3.x: many refs per process, bounded, attributed."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from pathlib import Path

import pytest

from cosign_signer import BatchSignError, Config, ImageNotFoundError, Signer, SignResult
from tests.helpers import make_signer, signer_config, verify
from tests.infra.images import Pusher
from tests.infra.registry import RegistryServer
from tests.infra.tools import KeyPair, Tools, generate_key_pair

MISSING = "sha256:" + "f" * 64


def timeline_binary(tmp_path: Path, real: Path) -> tuple[Path, Path]:
    """A wrapper that logs each signing run's start and end (with its argv), then the real cosign."""
    log = tmp_path / "timeline.log"
    script = tmp_path / "cosign-timeline"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$2" = --help ] && exec "{real}" "$@"\n'
        f'echo "start $$ $*" >> "{log}"\n'
        f'"{real}" "$@"; rc=$?\n'
        f'echo "end $$" >> "{log}"\n'
        "exit $rc\n"
    )
    script.chmod(0o755)
    return script, log


def max_concurrency(log: Path) -> tuple[int, int]:
    """(most processes running at once, number of processes) from a timeline log."""
    running = peak = total = 0
    for line in log.read_text().splitlines():
        if line.startswith("start "):
            running, total = running + 1, total + 1
            peak = max(peak, running)
        elif line.startswith("end "):
            running -= 1
    return peak, total


def test_forty_references_few_processes_all_verify(
    cosign_bin: Path,
    cosign_gen: str,
    registry: RegistryServer,
    keypair: KeyPair,
    push: Pusher,
    tmp_path: Path,
) -> None:
    spy, log = timeline_binary(tmp_path, cosign_bin)
    images = [push(repo=f"forty{cosign_gen}") for _ in range(40)]
    finished: list[str] = []
    signer = make_signer(spy, registry, keypair, max_workers=2)
    results = signer.sign_images(
        [i.by_digest for i in images], key="prod", on_result=lambda ref, _: finished.append(ref)
    )
    assert [r.digest for r in results] == [i.digest for i in images]
    assert sorted(finished) == sorted(i.by_digest for i in images)
    peak, processes = max_concurrency(log)
    assert peak <= 2
    assert processes == 2  # 20 references per cosign process
    with cf.ThreadPoolExecutor(4) as pool:
        checks = list(
            pool.map(
                lambda image: verify(
                    cosign_bin, image.by_digest, keypair.pub_path, registry=registry, home=tmp_path
                ),
                images,
            )
        )
    assert all(c.returncode == 0 for c in checks), [c.stderr for c in checks if c.returncode]


def test_failure_mid_batch_goes_on_with_the_rest(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    """The pre-flight fails the missing reference; cosign signs the other six in one run."""
    spy, log = timeline_binary(tmp_path, cosign_bin)
    images = [push(repo="mid") for _ in range(6)]
    refs = [i.by_digest for i in images]
    refs.insert(3, f"{registry.host}/mid@{MISSING}")
    with pytest.raises(BatchSignError) as info:
        make_signer(spy, registry, keypair, max_workers=1).sign_images(refs, key="prod")
    assert [r.reference for r in info.value.results] == [i.by_digest for i in images]
    assert isinstance(info.value.failures[refs[3]], ImageNotFoundError)
    assert max_concurrency(log) == (1, 1)


def test_same_digest_under_three_keys_from_three_threads(
    tools: Tools,
    cosign_bin: Path,
    registry: RegistryServer,
    keypair: KeyPair,
    other_keypair: KeyPair,
    push: Pusher,
    tmp_path: Path,
) -> None:
    third = generate_key_pair(tools, tmp_path / "third", "third")
    keys = {"one": keypair, "two": other_keypair, "three": third}
    image = push(repo="shared")
    barrier = threading.Barrier(3)

    def sign(alias: str) -> SignResult:
        pair = keys[alias]
        config = signer_config(cosign_bin, registry, pair, key_aliases={alias: str(pair.key_path)})
        signer = Signer(Config.from_dict(config))
        barrier.wait()
        return signer.sign_image(image.by_digest, key=alias)

    with cf.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(sign, keys))
    assert {r.key for r in results} == set(keys)
    for pair in keys.values():
        checked = verify(
            cosign_bin, image.by_digest, pair.pub_path, registry=registry, home=tmp_path
        )
        assert checked.returncode == 0, checked.stderr


def test_one_signer_shared_by_threads_with_overlapping_digests(
    cosign_bin: Path, registry: RegistryServer, keypair: KeyPair, push: Pusher, tmp_path: Path
) -> None:
    """Three threads share one Signer; their batches overlap on two digests, which the per-digest
    lock serialises: every call succeeds and every image verifies."""
    spy, log = timeline_binary(tmp_path, cosign_bin)
    images = [push(repo="threads") for _ in range(4)]
    shared = [images[0].by_digest, images[1].by_digest]
    batches = [[*shared, images[2].by_digest], [images[3].by_digest, *shared], shared]
    signer = make_signer(spy, registry, keypair, max_workers=2)
    barrier = threading.Barrier(3)

    def sign(refs: list[str]) -> list[SignResult]:
        barrier.wait()
        return signer.sign_images(refs, key="prod")

    with cf.ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(sign, batches))
    for refs, results in zip(batches, outcomes, strict=True):
        assert [r.reference for r in results] == refs
    starts = [line for line in log.read_text().splitlines() if line.startswith("start ")]
    assert starts, "cosign never ran"
    for image in images:
        checked = verify(
            cosign_bin, image.by_digest, keypair.pub_path, registry=registry, home=tmp_path
        )
        assert checked.returncode == 0, checked.stderr
