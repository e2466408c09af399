"""Dry run: the cosign commands ``sign_images`` would run, computed without a process or network.

The plan groups and chunks references the way ``Signer.sign_images`` does: references are taken
in input order, the same digest of the same repository is signed once, and a command gets at
most ``ceil(len(references) / workers)`` (and at most 200) distinct digests, with
``workers = min(max_workers, len(references))``.

What a plan cannot know without the registry:

- a **tag** is resolved to its digest only at run time, so the planned argv shows the tag
  reference where cosign will be given ``NAME@sha256:…``, and ``PlannedCommand.unresolved`` lists
  it; two tags (or a tag and a digest) that turn out to be one image are planned twice but signed
  once;
- whether an image exists: a reference the pre-flight rejects is dropped from its command at run
  time, so that command signs one reference fewer;
- ``skip_signed``: which images are signed already.

Registry credentials travel in a ``DOCKER_CONFIG`` folder made at run time: the plan names the
variable (``env_names``), never a value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import attrs

from cosign_signer.command import CosignCommandBuilder, TlogSetup, redact
from cosign_signer.keys import ResolvedKey
from cosign_signer.reference import ImageReference

__all__ = ["MAX_REFS_PER_PROCESS", "PlannedCommand", "chunk_size", "plan_sign", "planned_tlog"]

#: At most this many digests go to one cosign process (as ``Signer.sign_images``).
MAX_REFS_PER_PROCESS = 200
_PLACEHOLDER_DIR = "<private folder made at run time>"


def chunk_size(references: int, workers: int, *, bundle_per_ref: bool = False) -> int:
    """How many digests one cosign process gets: an even share of the workers, at most 200.

    One when every reference needs its own bundle (cosign 3.x uploading to a transparency log).
    """
    if bundle_per_ref:
        return 1
    workers = max(1, min(workers, references))
    return max(1, min(MAX_REFS_PER_PROCESS, -(-references // workers)))


def planned_tlog(builder: CosignCommandBuilder, api_version: int | None) -> TlogSetup:
    """Stand-in transparency-log files for a plan (the real ones are written at run time)."""
    return TlogSetup(
        api_version=api_version or 1,
        signing_config=f"{_PLACEHOLDER_DIR}/signing-config.json",
        trusted_root=f"{_PLACEHOLDER_DIR}/trusted-root.json",
        public_key_path=f"{_PLACEHOLDER_DIR}/rekor.pub",
    )


@attrs.frozen
class PlannedCommand:
    """One cosign process a run would start.

    ``argv`` (no secret is ever on it; known secret values are redacted anyway), ``env_names``
    the names of the extra environment variables it gets (values are not shown: some are
    secrets), ``references`` the caller's references it signs (as given), and ``unresolved`` the
    tag references shown as written because the digest they name is known only at run time.
    """

    argv: tuple[str, ...]
    env_names: tuple[str, ...]
    references: tuple[str, ...]
    unresolved: tuple[str, ...] = ()


@attrs.define
class _Planned:
    cosign_ref: str
    shown: str
    originals: list[str]
    unresolved: bool


def plan_sign(
    parsed: Sequence[ImageReference],
    *,
    builder: CosignCommandBuilder,
    key: ResolvedKey,
    binary: str,
    workers: int,
    credentials: bool,
    secrets: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    upload: bool = True,
    recursive: bool = False,
    tlog: TlogSetup | None = None,
) -> list[PlannedCommand]:
    """The commands that sign ``parsed`` (already validated and de-duplicated, input order).

    ``credentials`` says whether registry credentials are configured (then ``DOCKER_CONFIG`` is
    set at run time); ``tlog`` stands in for the transparency-log files written at run time.
    Pure: no process, no file, no network.
    """
    if not parsed:
        return []
    bundle_per_ref = tlog is not None and builder.capabilities.uses_signing_config
    size = chunk_size(len(parsed), workers, bundle_per_ref=bundle_per_ref)
    groups: dict[tuple[str, ...], _Planned] = {}
    chunks: list[list[_Planned]] = []
    forming: list[_Planned] = []
    for position, ref in enumerate(parsed):
        if ref.digest is not None:
            group: tuple[str, ...] = (ref.registry, ref.repository, ref.digest)
            planned = _Planned(ref.with_digest(ref.digest), ref.with_digest(ref.digest), [], False)
        else:
            # A stand-in digest the builder accepts; the argv shows the tag reference instead.
            group = ("tag", ref.original)
            marker = hashlib.sha256(f"cosign-signer plan: {ref.original}".encode()).hexdigest()
            stand_in = ref.with_digest(f"sha256:{marker}")
            planned = _Planned(stand_in, ref.original, [], True)
        existing = groups.get(group)
        if existing is None:
            groups[group] = planned
            forming.append(planned)
            existing = planned
        existing.originals.append(ref.original)
        if len(forming) >= size or (position == len(parsed) - 1 and forming):
            chunks.append(forming)
            forming = []

    docker_config = _PLACEHOLDER_DIR if credentials else None
    commands = []
    for number, chunk in enumerate(chunks, start=1):
        command = builder.sign(
            key,
            [p.cosign_ref for p in chunk],
            annotations=annotations,
            docker_config_dir=docker_config,
            binary=binary,
            upload=upload,
            recursive=recursive,
            tlog=tlog,
            bundle=f"{_PLACEHOLDER_DIR}/bundle-{number}.json" if bundle_per_ref else None,
        )
        shown = {p.cosign_ref: p.shown for p in chunk}
        commands.append(
            PlannedCommand(
                argv=tuple(redact(shown.get(arg, arg), secrets) for arg in command.argv),
                env_names=tuple(sorted(command.env)),
                references=tuple(o for p in chunk for o in p.originals),
                unresolved=tuple(p.shown for p in chunk if p.unresolved),
            )
        )
    return commands
