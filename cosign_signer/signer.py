"""The Signer facade: validate, pre-flight, plan, run cosign, attribute every outcome.

``sign_images`` turns a list of references into one typed outcome per reference:

1. every reference is parsed (a malformed one raises :class:`InvalidReferenceError` before
   anything runs), the key alias is resolved and the cosign binary is found and probed;
2. the registry pre-flight resolves tags to digests and proves each digest exists, concurrently;
3. references are grouped by digest (one digest is never signed by two processes at once) and
   spread over at most ``max_workers`` cosign processes, many references per process;
4. when cosign stops at a failing reference, the ones before it are signed, the failing one gets
   its typed error (transient ones are retried with backoff) and the rest go into a new batch.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cosign_signer import _classify, _process, _retry, _tlog, blob, plan, verify
from cosign_signer.blob import BlobSignResult
from cosign_signer.command import (
    CosignCapabilities,
    CosignCommand,
    CosignCommandBuilder,
    TlogSetup,
    redact,
    validate_annotations,
)
from cosign_signer.config import Config
from cosign_signer.errors import (
    BatchSignError,
    CosignError,
    CosignSignerError,
    CosignTimeoutError,
    InvalidReferenceError,
    SigningKeyError,
)
from cosign_signer.keys import KeyAliasResolver, ResolvedKey
from cosign_signer.plan import PlannedCommand
from cosign_signer.reference import DOCKER_HUB, ImageReference, parse_reference
from cosign_signer.verify import PublicKeyCache, VerifyResult

__all__ = ["OnResult", "SignResult", "Signer"]

_log = logging.getLogger("cosign_signer")

#: Called as each reference finishes: the reference as given, and its result or typed error.
OnResult = Callable[[str, "SignResult | CosignSignerError"], None]

_PREFLIGHT_WORKERS = 8
_PREFLIGHT_TIMEOUT = 30.0


@attrs.frozen
class SignResult:
    """One signed reference: as given, the manifest digest signed, the key alias, the log index.

    ``skipped`` is true when ``sign_images(..., skip_signed=True)`` found the digest already
    signed by the key and did not sign it again.
    """

    reference: str
    digest: str
    key: str
    tlog_index: int | None = None
    skipped: bool = False


@attrs.define
class _Target:
    """One digest to sign and every caller reference that resolved to it."""

    cosign_ref: str
    digest: str
    originals: list[str]
    attempts: int = 0
    #: Set once the target is settled: makes the result or error for any of its references.
    outcome: Callable[[str], SignResult | CosignSignerError] | None = None


@attrs.define
class _Chunk:
    targets: list[_Target]
    not_before: float = 0.0
    #: Where cosign 3.x writes this run's Sigstore bundle (to read the log index from).
    bundle: str | None = None


class _KeyedLocks:
    """One lock per digest, shared by every Signer of the process (cosign issue 2432)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, keys: Sequence[str]) -> Iterator[None]:
        ordered = sorted(set(keys))
        locks = []
        with self._guard:
            for key in ordered:
                lock, users = self._locks.get(key, (threading.Lock(), 0))
                self._locks[key] = (lock, users + 1)
                locks.append(lock)
        acquired: list[threading.Lock] = []
        try:
            for lock in locks:  # sorted order: no deadlock between overlapping batches
                lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in reversed(acquired):
                lock.release()
            with self._guard:
                for key in ordered:
                    lock, users = self._locks[key]
                    if users <= 1:
                        del self._locks[key]
                    else:
                        self._locks[key] = (lock, users - 1)


_DIGEST_LOCKS = _KeyedLocks()


class Signer:
    """Sign images with cosign by key alias. Safe to share between threads.

    >>> signer = Signer(Config.from_file("config.yaml"))          # doctest: +SKIP
    >>> signer.sign_image("registry.example/app:1.2", key="prod")  # doctest: +SKIP
    SignResult(reference='registry.example/app:1.2', digest='sha256:…', key='prod', tlog_index=None)
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._resolver = KeyAliasResolver(config.key_aliases)
        logging.getLogger("cosign_signer").setLevel(config.log_level_number)
        # Imported here: urllib/http.client/ssl cost ~20 ms, paid by building a Signer only.
        from cosign_signer._registry import RegistryClient, RegistryCredentials  # noqa: PLC0415

        credentials = None
        if config.registry_user is not None and config.registry_password is not None:
            credentials = RegistryCredentials(
                username=config.registry_user, password=config.registry_password
            )
        self._registry = RegistryClient(
            credentials=credentials,
            allow_http=config.allow_http_registry,
            allow_insecure=config.allow_insecure_registry,
            timeout=min(config.timeout, _PREFLIGHT_TIMEOUT),
        )
        self._cosign_lock = threading.Lock()
        self._cosign: tuple[str, CosignCapabilities] | None = None
        self._blob_caps: CosignCapabilities | None = None
        self._public_keys = PublicKeyCache()
        self._tlog_files = _tlog.TlogFiles()

    @classmethod
    def from_config_file(cls, path: str | os.PathLike[str]) -> Signer:
        """Load the ``cosign_signer`` section of ``path`` and build a Signer from it."""
        return cls(Config.from_file(path))

    def __repr__(self) -> str:
        return (
            f"Signer(cosign_binary={self._config.cosign_binary!r}, "
            f"key_aliases={list(self._resolver.aliases)!r})"
        )

    @property
    def config(self) -> Config:
        """The configuration this signer was built from."""
        return self._config

    @property
    def key_resolver(self) -> KeyAliasResolver:
        """The resolver of this signer's key aliases."""
        return self._resolver

    def capabilities(self) -> CosignCapabilities:
        """Find the cosign binary and read what it supports (once per Signer)."""
        return self._find_cosign()[1]

    def close(self) -> None:
        """Remove the private files this Signer wrote (derived public keys, the signing config
        and trusted root for the transparency log). The Signer stays usable."""
        self._public_keys.close()
        self._tlog_files.close()

    def __enter__(self) -> Signer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def sign_image(
        self, reference: str, *, key: str, annotations: Mapping[str, str] | None = None
    ) -> SignResult:
        """Sign one reference; return its :class:`SignResult` or raise its typed error."""
        try:
            return self.sign_images([reference], key=key, annotations=annotations)[0]
        except BatchSignError as exc:
            raise next(iter(exc.failures.values())) from None

    def sign_images(
        self,
        references: Sequence[str],
        *,
        key: str,
        annotations: Mapping[str, str] | None = None,
        on_result: OnResult | None = None,
        skip_signed: bool = False,
        upload: bool = True,
        recursive: bool = False,
    ) -> list[SignResult]:
        """Sign every reference; return results in input order or raise :class:`BatchSignError`.

        The same reference given twice is signed once. ``on_result`` is called (in the calling
        thread) as each reference finishes, with its result or its typed error.

        ``skip_signed=True`` first verifies each reference with the key's public key and does not
        sign again what verifies (``SignResult.skipped``); ``upload=False`` runs cosign with
        ``--upload=false`` (nothing is written to the registry; it is still read);
        ``recursive=True`` signs an image index and each of its child manifests (``--recursive``).
        """
        parsed, resolved_key = self._checked_inputs(
            references,
            annotations,
            key,
            "sign_images takes a list of references; use sign_image for one",
        )
        binary, caps = self._find_cosign()
        builder = CosignCommandBuilder(self._config, caps)
        if not parsed:
            return []
        tlog = None
        if self._config.upload_tlog and upload:
            tlog = self._tlog_files.setup(self._config, builder, binary)

        started = time.monotonic()
        results: dict[str, SignResult] = {}
        failures: dict[str, CosignSignerError] = {}

        def finish(original: str, outcome: SignResult | CosignSignerError) -> None:
            if isinstance(outcome, SignResult):
                results[original] = outcome
            else:
                failures[original] = outcome
            if on_result is not None:
                on_result(original, outcome)

        with self._credentials_dir(parsed) as docker_config:
            to_sign = parsed
            if skip_signed:
                to_sign = self._skip_signed(parsed, resolved_key, builder, docker_config, finish)
            preflight_seconds = 0.0
            if to_sign:
                preflight_seconds = _BatchRun(
                    signer=self,
                    builder=builder,
                    binary=binary,
                    key=resolved_key,
                    annotations=annotations,
                    docker_config=docker_config,
                    finish=finish,
                    upload=upload,
                    recursive=recursive,
                    tlog=tlog,
                ).run(to_sign)
        _log.info(
            "signed %d of %d references with key %r in %.2f s (pre-flight %.2f s, cosign %s)",
            len(results),
            len(parsed),
            key,
            time.monotonic() - started,
            preflight_seconds,
            caps.generation,
        )
        ordered = [results[r.original] for r in parsed if r.original in results]
        if failures:
            raise BatchSignError(
                ordered,
                {r.original: failures[r.original] for r in parsed if r.original in failures},
            )
        return ordered

    def verify_image(self, reference: str, *, key: str) -> VerifyResult:
        """Verify that ``reference`` carries a signature made with ``key``'s alias.

        A tag is resolved to its digest first, and the digest verified. Raises
        :class:`VerificationError` when no signature verifies, or the typed error of the
        pre-flight or of cosign (see :mod:`cosign_signer.verify`).
        """
        ref = parse_reference(reference)
        resolved_key = self._resolver.resolve_key(key)
        binary, caps = self._find_cosign()
        builder = CosignCommandBuilder(self._config, caps)
        with self._credentials_dir([ref]) as docker_config:
            public_key = self._public_key(resolved_key, builder, binary)
            return self._verify_ref(ref, resolved_key, public_key, builder, docker_config)

    def sign_blob(
        self,
        path: str | os.PathLike[str],
        *,
        key: str,
        bundle_path: str | os.PathLike[str] | None = None,
    ) -> BlobSignResult:
        """Sign a file, writing its Sigstore bundle to ``bundle_path`` (``<file>.sigstore.json``).

        Raises :class:`ArtifactNotFoundError` before cosign runs when the file can't be read or
        the bundle can't be written, else cosign's typed error (see :mod:`cosign_signer.blob`).
        """
        resolved_key = self._resolver.resolve_key(key)
        binary, sign_caps = self._find_cosign()
        with self._cosign_lock:
            if self._blob_caps is None:
                self._blob_caps = _process.probe_capabilities(binary, command="sign-blob")
            caps = self._blob_caps
        tlog = None
        if self._config.upload_tlog:
            sign_builder = CosignCommandBuilder(self._config, sign_caps)
            tlog = self._tlog_files.setup(self._config, sign_builder, binary)
        return blob.sign_blob(
            path,
            bundle_path=bundle_path,
            config=self._config,
            builder=CosignCommandBuilder(self._config, caps),
            binary=binary,
            key=resolved_key,
            tlog=tlog,
        )

    def plan(
        self,
        references: Sequence[str],
        *,
        key: str,
        annotations: Mapping[str, str] | None = None,
        upload: bool = True,
        recursive: bool = False,
        capabilities: CosignCapabilities | None = None,
    ) -> list[PlannedCommand]:
        """The cosign commands ``sign_images`` would run for these arguments; nothing is signed.

        No network is used and nothing is written. A tag can't be resolved without the registry:
        its command shows the tag where cosign will get ``NAME@sha256:…`` and lists it in
        ``PlannedCommand.unresolved`` (see :mod:`cosign_signer.plan`). The binary is found on
        disk; its flags come from ``capabilities`` when given (then no process starts at all),
        else from ``cosign sign --help``, read once per Signer as ``sign_images`` does.
        """
        parsed, resolved_key = self._checked_inputs(
            references, annotations, key, "plan takes a list of references, like sign_images"
        )
        if capabilities is None:
            binary, capabilities = self._find_cosign()
        else:
            binary = _process.find_executable(self._config.cosign_binary)
        builder = CosignCommandBuilder(self._config, capabilities)
        tlog = None
        if self._config.upload_tlog and upload:
            tlog = plan.planned_tlog(builder, self._config.rekor_api_version)
            builder.tlog_flags(tlog)  # a log this cosign can't use is a ConfigError here too
        return plan.plan_sign(
            parsed,
            builder=builder,
            key=resolved_key,
            binary=binary,
            workers=self._max_workers(),
            credentials=(
                self._config.registry_user is not None
                and self._config.registry_password is not None
            ),
            secrets=self._config.secret_values,
            annotations=annotations,
            upload=upload,
            recursive=recursive,
            tlog=tlog,
        )

    # ---- internals ---------------------------------------------------------------------------

    def _checked_inputs(
        self,
        references: Sequence[str],
        annotations: Mapping[str, str] | None,
        key: str,
        not_a_list: str,
    ) -> tuple[list[ImageReference], ResolvedKey]:
        """Everything a call checks before any process or request: references, annotations, key."""
        if isinstance(references, str):
            raise InvalidReferenceError(references, not_a_list)
        parsed = _parse_all(references)
        validate_annotations(annotations)
        return parsed, self._resolver.resolve_key(key)

    def _public_key(self, key: ResolvedKey, builder: CosignCommandBuilder, binary: str) -> str:
        return self._public_keys.path_for(
            key,
            lambda: verify.derive_public_key(
                config=self._config, builder=builder, binary=binary, key=key
            ),
        )

    def _verify_ref(
        self,
        ref: ImageReference,
        key: ResolvedKey,
        public_key: str,
        builder: CosignCommandBuilder,
        docker_config: str | None,
    ) -> VerifyResult:
        digest = self._resolve_with_retries(ref)
        return verify.verify_digest(
            ref.original,
            ref.with_digest(digest),
            digest,
            public_key=public_key,
            key=key,
            config=self._config,
            builder=builder,
            binary=self._find_cosign()[0],
            docker_config_dir=docker_config,
        )

    def _skip_signed(
        self,
        parsed: Sequence[ImageReference],
        key: ResolvedKey,
        builder: CosignCommandBuilder,
        docker_config: str | None,
        finish: Callable[[str, SignResult | CosignSignerError], None],
    ) -> list[ImageReference]:
        """Finish what is signed already (or can't be checked); return what is left to sign."""
        try:
            public_key = self._public_key(key, builder, self._find_cosign()[0])
        except CosignError as exc:
            for ref in parsed:
                finish(ref.original, exc)
            return []
        verified, failed, unsigned = verify.split_signed(
            parsed,
            lambda ref: self._verify_ref(ref, key, public_key, builder, docker_config),
            workers=self._max_workers(),
        )
        for ref in parsed:
            if ref.original in verified:
                done = verified[ref.original]
                finish(ref.original, SignResult(ref.original, done.digest, key.alias, skipped=True))
            elif ref.original in failed:
                finish(ref.original, failed[ref.original])
        _log.info("%d of %d references were signed already", len(verified), len(parsed))
        return unsigned

    def _find_cosign(self) -> tuple[str, CosignCapabilities]:
        with self._cosign_lock:
            if self._cosign is None:
                binary = _process.find_executable(self._config.cosign_binary)
                self._cosign = (binary, _process.probe_capabilities(binary))
            return self._cosign

    def _max_workers(self) -> int:
        return self._config.max_workers or os.cpu_count() or 1

    def _resolve_with_retries(self, ref: ImageReference) -> str:
        return _retry.with_retries(
            lambda _attempt: self._registry.resolve(ref),
            what=f"pre-flight of {ref.original}",
            retries=self._config.retries,
            base=self._config.retry_backoff,
        )

    def _backoff(self, attempt: int) -> float:
        return _retry.backoff_delay(attempt, self._config.retry_backoff)

    @contextlib.contextmanager
    def _credentials_dir(self, parsed: Sequence[ImageReference]) -> Iterator[str | None]:
        """A private DOCKER_CONFIG folder (0700, removed afterwards) when credentials are set."""
        user, password = self._config.registry_user, self._config.registry_password
        if user is None or password is None:
            yield None
            return
        folder = tempfile.mkdtemp(prefix="cosign-signer-auth-")
        try:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            hosts = {
                ("https://index.docker.io/v1/" if r.registry == DOCKER_HUB else r.registry)
                for r in parsed
            }
            document = {"auths": {host: {"auth": token} for host in sorted(hosts)}}
            path = Path(folder) / "config.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle)
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _redact(self, text: str) -> str:
        return redact(text, self._config.secret_values)


class _BatchRun:
    """One ``sign_images`` call's cosign work: a queue of chunks run by bounded workers."""

    def __init__(
        self,
        *,
        signer: Signer,
        builder: CosignCommandBuilder,
        binary: str,
        key: ResolvedKey,
        annotations: Mapping[str, str] | None,
        docker_config: str | None,
        finish: Callable[[str, SignResult | CosignSignerError], None],
        upload: bool = True,
        recursive: bool = False,
        tlog: TlogSetup | None = None,
    ) -> None:
        self._upload = upload
        self._recursive = recursive
        self._tlog = tlog
        # cosign 3.x writes one bundle per run, for its last reference: to read every
        # reference's log index, each runs alone (3.x decrypts the key per reference anyway).
        self._bundle_per_ref = tlog is not None and builder.capabilities.uses_signing_config
        self._signer = signer
        self._config = signer.config
        self._builder = builder
        self._binary = binary
        self._key = key
        self._annotations = annotations
        self._docker_config = docker_config
        self._finish = finish
        self._env = {**os.environ, **builder.environment(docker_config, tlog=tlog)}
        #: This batch's cosign processes: an interrupted batch stops its own, not other batches'.
        self._children = _process.ChildSet()

    def run(self, parsed: Sequence[ImageReference]) -> float:
        """Pre-flight every reference and sign what exists; return the pre-flight's seconds.

        Pre-flight and signing overlap: a chunk of references starts in cosign as soon as all of
        its references are resolved, while the next ones are still being checked.
        """
        started = time.monotonic()
        workers = min(self._signer._max_workers(), len(parsed))
        size = plan.chunk_size(len(parsed), workers, bundle_per_ref=self._bundle_per_ref)
        targets: dict[tuple[str, str, str], _Target] = {}
        forming: list[_Target] = []
        queue: deque[_Chunk] = deque()
        running: dict[cf.Future[Any], _Chunk] = {}
        preflight = cf.ThreadPoolExecutor(
            min(_PREFLIGHT_WORKERS, len(parsed)), thread_name_prefix="cosign-preflight"
        )
        pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="cosign-sign")
        resolving = [preflight.submit(self._signer._resolve_with_retries, ref) for ref in parsed]
        taken = 0
        preflight_seconds = 0.0
        try:
            while taken < len(parsed) or queue or running:
                # Take resolved references in input order; group them by digest into chunks.
                while taken < len(parsed) and resolving[taken].done():
                    ref = parsed[taken]
                    taken += 1
                    target = self._admit(ref, resolving[taken - 1], targets)
                    if target is not None:
                        forming.append(target)
                    if len(forming) >= size or (taken == len(parsed) and forming):
                        queue.append(_Chunk(forming))
                        forming = []
                    if taken == len(parsed):
                        preflight_seconds = time.monotonic() - started
                now = time.monotonic()
                self._start_due(queue, running, pool, workers, now)
                waiting: set[cf.Future[Any]] = set(running)
                if taken < len(parsed):
                    waiting.add(resolving[taken])
                timeout = _time_to_next(queue, now)
                if not waiting:
                    time.sleep(timeout or 0.0)
                    continue
                done, _ = cf.wait(waiting, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    chunk_done = running.pop(future, None)
                    if chunk_done is not None:
                        queue.extend(self._settle(chunk_done, future.result()))
                queue = deque(sorted(queue, key=lambda c: c.not_before))
        except BaseException:
            self._children.stop_all(close=True)
            pool.shutdown(wait=True, cancel_futures=True)
            preflight.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        preflight.shutdown(wait=True)
        return preflight_seconds

    def _start_due(
        self,
        queue: deque[_Chunk],
        running: dict[cf.Future[Any], _Chunk],
        pool: cf.ThreadPoolExecutor,
        workers: int,
        now: float,
    ) -> None:
        """Start queued chunks whose time has come, up to ``workers`` processes at once."""
        while queue and len(running) < workers and queue[0].not_before <= now:
            chunk = queue.popleft()
            running[pool.submit(self._run_chunk, chunk)] = chunk

    def _admit(
        self,
        ref: ImageReference,
        resolved: cf.Future[str],
        targets: dict[tuple[str, str, str], _Target],
    ) -> _Target | None:
        """Record a pre-flight outcome; return a new target to sign, or None."""
        try:
            digest = resolved.result()
        except CosignError as exc:
            self._finish(ref.original, exc)
            return None
        group = (ref.registry, ref.repository, digest)
        existing = targets.get(group)
        if existing is None:
            targets[group] = _Target(ref.with_digest(digest), digest, [ref.original])
            return targets[group]
        # Same digest as an earlier reference: sign once, report it for both.
        existing.originals.append(ref.original)
        if existing.outcome is not None:
            self._finish_target_original(existing, ref.original)
        return None

    def _command(self, chunk: _Chunk) -> CosignCommand:
        if self._bundle_per_ref and chunk.bundle is None:
            chunk.bundle = self._signer._tlog_files.bundle_path()
        return self._builder.sign(
            self._key,
            [t.cosign_ref for t in chunk.targets],
            annotations=self._annotations,
            docker_config_dir=self._docker_config,
            binary=self._binary,
            upload=self._upload,
            recursive=self._recursive,
            tlog=self._tlog,
            bundle=chunk.bundle,
        )

    def _run_chunk(self, chunk: _Chunk) -> _process.Completed | _process.ProcessTimeout:
        command = self._command(chunk)
        for target in chunk.targets:
            target.attempts += 1
        _log.debug("running %s", self._signer._redact(" ".join(command.argv)))
        with _DIGEST_LOCKS.hold([t.cosign_ref for t in chunk.targets]):
            try:
                return _process.run(
                    command.argv,
                    env=self._env,
                    timeout=self._config.timeout,
                    children=self._children,
                )
            except _process.ProcessTimeout as exc:
                return exc

    def _settle(
        self, chunk: _Chunk, outcome: _process.Completed | _process.ProcessTimeout
    ) -> list[_Chunk]:
        """Record what a finished cosign process did; return the chunks still to run."""
        targets = chunk.targets
        refs = [t.cosign_ref for t in targets]
        stderr = self._signer._redact(outcome.stderr)
        if isinstance(outcome, _process.ProcessTimeout):
            # Killed: only its progress lines (below) tell which references it finished.
            failing: str | None = _classify.ALL
            error_type: type[CosignError] = CosignTimeoutError
            transient, returncode = True, None
        elif outcome.returncode == 0:
            self._succeed(targets, self._tlog_indices(chunk, outcome.stderr))
            _log.info("cosign signed %d references in %.2f s", len(refs), outcome.seconds)
            return []
        else:
            failing = _classify.failing_reference(outcome.stderr, refs)
            error_type, transient = _classify.classify(outcome.stderr)
            returncode = outcome.returncode

        if failing is None and len(targets) > 1:
            # Nothing says which reference failed: try each alone to attribute it honestly.
            _log.warning(
                "cosign failed on a batch of %d without naming a reference; retrying each alone",
                len(refs),
            )
            return [_Chunk([t]) for t in targets]
        if failing == _classify.ALL and len(targets) > 1 and not self._recursive:
            # cosign names every reference; its progress lines tell which ones it signed.
            at = _classify.stopped_at(outcome.stderr, refs)
            failing = refs[at] if at is not None else failing
        if failing == _classify.ALL or failing is None:
            signed, failed, rest = [], targets, []
        else:
            at = refs.index(failing)
            signed, failed, rest = targets[:at], [targets[at]], targets[at + 1 :]
        self._succeed(signed, self._tlog_indices(chunk, outcome.stderr))
        summary = _classify.summary_line(stderr)
        _log.info("cosign stopped after %d of %d references: %s", len(signed), len(refs), summary)
        later: list[_Chunk] = [_Chunk(rest)] if rest else []
        attempts = max(t.attempts for t in failed)
        if transient and attempts <= self._config.retries:
            delay = self._signer._backoff(attempts)
            _log.warning(
                "signing %s failed (%s); retry %d of %d in %.1f s",
                ", ".join(t.cosign_ref for t in failed),
                summary,
                attempts,
                self._config.retries,
                delay,
            )
            later.append(_Chunk(failed, not_before=time.monotonic() + delay))
            return later
        if error_type is SigningKeyError:
            # The key is unusable for every reference: don't start cosign again for the rest.
            failed, later = failed + rest, []
        argv = tuple(self._signer._redact(arg) for arg in self._command(chunk).argv)
        for target in failed:
            self._settle_target(
                target,
                functools.partial(
                    self._error,
                    error_type,
                    argv=argv,
                    returncode=returncode,
                    stderr=stderr,
                    attempts=target.attempts,
                    transient=transient,
                ),
            )
        return later

    def _settle_target(
        self, target: _Target, outcome: Callable[[str], SignResult | CosignSignerError]
    ) -> None:
        target.outcome = outcome
        for original in target.originals:
            self._finish_target_original(target, original)

    def _finish_target_original(self, target: _Target, original: str) -> None:
        assert target.outcome is not None  # noqa: S101 - only called on settled targets
        self._finish(original, target.outcome(original))

    def _error(
        self,
        error_type: type[CosignError],
        original: str,
        *,
        argv: Sequence[str],
        returncode: int | None,
        stderr: str,
        attempts: int,
        transient: bool,
    ) -> CosignError:
        timed_out = error_type is CosignTimeoutError
        return _classify.failure(
            f"signing {original}",
            reference=original,
            argv=argv,
            stderr=stderr,
            returncode=None if timed_out else returncode,
            secrets=self._config.secret_values,
            attempts=attempts,
            timed_out_after=self._config.timeout if timed_out else None,
            classified=None if timed_out else (error_type, transient),
        )

    def _tlog_indices(self, chunk: _Chunk, stderr: str) -> list[int]:
        """Log indices of the chunk's references, in order: cosign 2.x prints them, 3.x puts
        them in the bundle (then removed: it was only written to be read here)."""
        if self._tlog is None:
            return []
        if chunk.bundle is None:
            return _classify.tlog_indices(stderr)
        index = _tlog.read_bundle_index(chunk.bundle)
        with contextlib.suppress(OSError):
            Path(chunk.bundle).unlink()
        return [] if index is None else [index]

    def _succeed(self, targets: Sequence[_Target], indices: Sequence[int]) -> None:
        for position, target in enumerate(targets):
            index = indices[position] if position < len(indices) and not self._recursive else None
            self._settle_target(
                target,
                functools.partial(
                    SignResult,
                    digest=target.digest,
                    key=self._key.alias,
                    tlog_index=index if self._config.upload_tlog else None,
                ),
            )


def _time_to_next(queue: deque[_Chunk], now: float) -> float | None:
    """Seconds until the earliest queued chunk may start (None when nothing is queued)."""
    due = min((c.not_before for c in queue), default=None)
    return None if due is None else max(0.0, due - now)


def _parse_all(references: Sequence[str]) -> list[ImageReference]:
    """Parse every reference (first bad one raises), dropping repeats of the same string."""
    parsed: dict[str, ImageReference] = {}
    bad = []
    for ref in references:
        try:
            if ref not in parsed:
                parsed[ref] = parse_reference(ref)
        except InvalidReferenceError as exc:
            bad.append(exc)
        except TypeError:
            bad.append(InvalidReferenceError(repr(ref), "expected a string"))
    if bad:
        first = bad[0]
        if len(bad) > 1:
            raise InvalidReferenceError(
                first.reference, f"{first.reason} (and {len(bad) - 1} more invalid references)"
            )
        raise first
    return list(parsed.values())
