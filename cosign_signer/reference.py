"""OCI image references: parse and validate by the distribution spec's grammar.

A reference is accepted only when it names a tag or a ``sha256:`` digest; it never starts with
``-``, never holds whitespace or control characters, and its repository path is lower case.
Everything that reaches cosign's argv passed through :func:`parse_reference`.
"""

from __future__ import annotations

import re

import attrs

from cosign_signer.errors import InvalidReferenceError

__all__ = ["ImageReference", "parse_reference"]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"

# distribution/reference grammar (reference/regexp.go), restricted to sha256 digests.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_MAX_NAME = 255
_MIN_REPOSITORY = 2
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


@attrs.frozen
class ImageReference:
    """A parsed, validated image reference.

    ``original`` is the string as given; ``registry`` the host (with port) the API is reached at;
    ``repository`` the path inside it (``library/`` added for Docker Hub's official images);
    ``name`` the name part as written (what is shown to cosign).
    """

    original: str
    name: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def with_digest(self, digest: str) -> str:
        """The reference that pins ``digest``: ``NAME@sha256:…`` (what cosign is given)."""
        return f"{self.name}@{digest}"

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest if given, else the tag."""
        return self.digest or self.tag or ""

    @property
    def is_loopback(self) -> bool:
        """Whether the registry is on this machine (cosign and we reach it over plain HTTP)."""
        host = (
            self.registry.rsplit(":", 1)[0]
            if not self.registry.startswith("[")
            else (self.registry.split("]", 1)[0] + "]")
        )
        return host in {"localhost", "[::1]"} or host.startswith("127.")

    @property
    def api_host(self) -> str:
        """The host:port the registry's HTTP API answers on."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry


def parse_reference(reference: object) -> ImageReference:
    """Parse ``reference`` or raise :class:`InvalidReferenceError` saying what is wrong."""
    if not isinstance(reference, str):
        raise InvalidReferenceError(
            repr(reference), f"expected a string, got {type(reference).__name__}"
        )
    text = reference
    if not text:
        raise InvalidReferenceError(text, "empty reference")
    if text.startswith("-"):
        raise InvalidReferenceError(text, "must not start with '-'")
    if _FORBIDDEN.search(text):
        raise InvalidReferenceError(text, "contains whitespace or control characters")

    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidReferenceError(
                text, "digest must be 'sha256:' followed by 64 lower-case hex characters"
            )
    name, tag = rest, None
    last_colon = rest.rfind(":")
    if last_colon > rest.rfind("/"):
        name, tag = rest[:last_colon], rest[last_colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReferenceError(
                text, "tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
            )
    if tag is None and digest is None:
        raise InvalidReferenceError(text, "needs a tag (':1.2') or a digest ('@sha256:…')")
    if not name:
        raise InvalidReferenceError(text, "missing repository name")
    if len(name) > _MAX_NAME:
        raise InvalidReferenceError(text, f"name longer than {_MAX_NAME} characters")

    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first, remainder
        if not _DOMAIN_RE.fullmatch(registry):
            raise InvalidReferenceError(text, f"invalid registry host {registry!r}")
    else:
        registry, path = DOCKER_HUB, name
    if not _PATH_RE.fullmatch(path):
        reason = (
            "repository path must be lower case"
            if path != path.lower()
            else "invalid repository path (lower-case letters, digits and . _ - separators, "
            "components joined by '/')"
        )
        raise InvalidReferenceError(text, reason)
    repository = f"library/{path}" if registry == DOCKER_HUB and "/" not in path else path
    if len(repository) < _MIN_REPOSITORY:
        # go-containerregistry, which cosign parses references with, refuses shorter names.
        raise InvalidReferenceError(text, "repository name must be at least 2 characters")
    return ImageReference(
        original=text, name=name, registry=registry, repository=repository, tag=tag, digest=digest
    )
