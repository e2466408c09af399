"""Batch signing: the library against raw cosign, measured in the same run.

For each cosign generation provisioned, on FRESH digests every run (re-signing is ~3x cheaper):
  (a) raw cosign, one process per reference, 10 in parallel (what the replaced system does);
  (b) raw cosign, the best hand-written arrangement: the fastest of one process with every
      reference, 2 and 4 parallel processes splitting them;
  (c) ``Signer.sign_images`` (pre-flight included).
Prints medians over ``--runs`` runs and the ratios c/a and c/b; also the overhead of one
``sign_image`` over one raw cosign run, and ``import cosign_signer`` time.

    python bench/bench_batch.py [--refs 60] [--runs 3] [--generations 2,3]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosign_signer import Config, Signer, parse_reference  # noqa: E402 - after the path set-up
from cosign_signer._registry import RegistryClient, RegistryCredentials  # noqa: E402
from tests.infra.images import push_image  # noqa: E402
from tests.infra.registry import HtpasswdAuth, RegistryServer  # noqa: E402
from tests.infra.tools import KeyPair, Tools, find_tools, generate_key_pair  # noqa: E402


def raw_flags(gen: str) -> list[str]:
    if gen == "3":
        return ["--use-signing-config=false", "--tlog-upload=false"]
    return ["--tlog-upload=false"]


def run_raw(cosign: Path, gen: str, key: KeyPair, refs: Sequence[str], env: dict[str, str]) -> None:
    argv = [str(cosign), "sign", "--key", str(key.key_path), "-y", *raw_flags(gen), *refs]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"raw cosign failed: {done.stderr[-500:]}")


def split(refs: Sequence[str], parts: int) -> list[list[str]]:
    size = -(-len(refs) // parts)
    return [list(refs[i : i + size]) for i in range(0, len(refs), size)]


def parallel(
    parts: Sequence[Sequence[str]], workers: int, fn: Callable[[Sequence[str]], None]
) -> None:
    with cf.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(fn, p) for p in parts]:
            future.result()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_generation(  # noqa: PLR0917 - a script's one worker function, called once
    tools: Tools,
    gen: str,
    key: KeyPair,
    auth: HtpasswdAuth,
    env: dict[str, str],
    fresh: Callable[[int], list[str]],
    runs: int,
    n_refs: int,
) -> None:
    """Time (a), (b) and (c) for one cosign generation and print medians and ratios."""
    cosign = tools.cosign[gen]
    config = Config.from_dict(
        {
            "cosign_binary": str(cosign),
            "registry_user": auth.user,
            "registry_password": auth.password,
            "env_variables": {"COSIGN_PASSWORD": key.password},
            "key_aliases": {"k": str(key.key_path)},
            "log_level": "WARNING",
        }
    )
    signer = Signer(config)
    signer.capabilities()  # probe once, as a long-lived signer would
    ways: dict[str, Callable[[list[str]], None]] = {
        "a: 1 proc/ref x10": lambda refs: parallel(
            [[r] for r in refs], 10, lambda p: run_raw(cosign, gen, key, p, env)
        ),
        "b1: 1 proc, all refs": lambda refs: run_raw(cosign, gen, key, refs, env),
        "b2: 2 procs": lambda refs: parallel(
            split(refs, 2), 2, lambda p: run_raw(cosign, gen, key, p, env)
        ),
        "b4: 4 procs": lambda refs: parallel(
            split(refs, 4), 4, lambda p: run_raw(cosign, gen, key, p, env)
        ),
        "c: Signer.sign_images": lambda refs: signer.sign_images(refs, key="k") and None,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, way in ways.items():  # interleaved, so drift hits every way alike
            refs = fresh(n_refs)
            times[name].append(timed(lambda way=way, refs=refs: way(refs)))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    best_b = min((n for n in med if n.startswith("b")), key=med.__getitem__)
    print(f"\ncosign {gen}.x ({tools.cosign_versions[gen]}):")
    for name, value in med.items():
        each = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:24s} {value:6.2f} s   (runs: {each})")
    c = med["c: Signer.sign_images"]
    print(
        f"  best raw (b) = {best_b.split(':')[0]}; c/a = {c / med['a: 1 proc/ref x10']:.3f}, "
        f"a/c = {med['a: 1 proc/ref x10'] / c:.2f}, c/b = {c / med[best_b]:.3f}"
    )

    preflight = []
    for _ in range(runs):
        parsed = [parse_reference(r) for r in fresh(n_refs)]
        client = RegistryClient(
            credentials=RegistryCredentials(username=auth.user, password=auth.password)
        )
        with cf.ThreadPoolExecutor(8) as pool:
            preflight.append(
                timed(lambda pool=pool, c=client, p=parsed: list(pool.map(c.resolve, p)))
            )
    share = statistics.median(preflight) / c
    print(
        f"  pre-flight alone (resolve {n_refs} refs, 8 threads): "
        f"{statistics.median(preflight) * 1000:.0f} ms = {share:.1%} of c "
        "(it overlaps with signing)"
    )

    single_raw, single_lib = [], []
    for _ in range(max(5, runs)):
        ref = fresh(1)
        single_raw.append(timed(lambda ref=ref: run_raw(cosign, gen, key, ref, env)))
        ref = fresh(1)
        single_lib.append(timed(lambda ref=ref: signer.sign_image(ref[0], key="k")))
    overhead = statistics.median(single_lib) - statistics.median(single_raw)
    print(
        f"  one reference: raw {statistics.median(single_raw) * 1000:.0f} ms, "
        f"sign_image {statistics.median(single_lib) * 1000:.0f} ms, "
        f"overhead {overhead * 1000:+.1f} ms (medians of {len(single_raw)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--generations", default="2,3")
    args = parser.parse_args()
    tools: Tools = find_tools(ROOT)
    print(
        f"machine: {os.cpu_count()} CPUs; {args.refs} fresh refs per measurement; "
        f"medians of {args.runs} runs"
    )
    with tempfile.TemporaryDirectory(prefix="cosign-bench-") as tmp:
        work = Path(tmp)
        key = generate_key_pair(tools, work / "keys", "bench")
        auth = HtpasswdAuth("bench", secrets.token_urlsafe(16))
        with RegistryServer(tools.registry, auth=auth) as registry:
            docker_config = registry.write_docker_config(work / "docker-config")
            env = {
                **os.environ,
                "DOCKER_CONFIG": str(docker_config),
                "COSIGN_PASSWORD": key.password,
                "HOME": str(work),
            }
            counter = iter(range(10**9))

            def fresh(n: int) -> list[str]:
                repo = f"bench/r{next(counter)}"
                digests = [push_image(registry.url, repo, auth=auth.credentials) for _ in range(n)]
                return [f"{registry.host}/{repo}@{digest}" for digest in digests]

            for gen in args.generations.split(","):
                bench_generation(tools, gen, key, auth, env, fresh, args.runs, args.refs)

    # As installed: bytecode cached (this machine sets PYTHONDONTWRITEBYTECODE; a warm-up run
    # without it writes the cache once).
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import cosign_signer"], env=clean, check=True)
    imports = []
    for _ in range(7):
        base = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=clean, check=True))
        full = timed(
            lambda: subprocess.run(
                [sys.executable, "-c", "import cosign_signer"], env=clean, check=True
            )
        )
        imports.append(full - base)
    print(
        f"\nimport cosign_signer: {statistics.median(imports) * 1000:.0f} ms (median of 7, "
        "interpreter start subtracted, bytecode cached)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
