"""Push small, fresh OCI images to a registry through the distribution HTTP API.

Standard library only. Each call opens ONE keep-alive ``http.client`` connection (loopback, plain
HTTP) and reuses it for all its requests; ``urllib.request`` would open one per request. Every
pushed image has random content, so every call yields a new manifest digest (cosign costs differ
for first and repeated signatures, so tests and benchmarks want fresh digests).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import secrets
import socket
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    from tests.infra.registry import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

Auth = tuple[str, str] | None
"""``(user, password)`` for HTTP Basic auth, or ``None`` for an open registry."""


@dataclass(frozen=True)
class ImageRef:
    """A pushed image: ``host/repo@sha256:…`` and, when tagged, ``host/repo:tag``."""

    host: str
    repo: str
    digest: str
    tag: str | None = None

    @property
    def by_digest(self) -> str:
        return f"{self.host}/{self.repo}@{self.digest}"

    @property
    def by_tag(self) -> str | None:
        return f"{self.host}/{self.repo}:{self.tag}" if self.tag is not None else None


class Pusher(Protocol):
    """Type of the ``push`` fixture: pushes a fresh image, to ``registry`` unless ``server``."""

    def __call__(
        self, repo: str = "app", tag: str | None = None, *, server: RegistryServer | None = None
    ) -> ImageRef: ...


class RegistryHTTPError(RuntimeError):
    """The registry answered with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        text = body.decode("utf-8", errors="replace")[:500]
        super().__init__(f"{method} {path} -> {status}: {text}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Client:
    """One keep-alive connection to a registry, Basic auth sent upfront when given."""

    def __init__(self, registry_url: str, auth: Auth, timeout: float = 30.0) -> None:
        parts = urlsplit(registry_url if "://" in registry_url else f"http://{registry_url}")
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"expected an http://HOST:PORT registry URL, got {registry_url!r}")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        self.conn.connect()
        # http.client sends headers and body in separate writes: without TCP_NODELAY, Nagle plus
        # delayed ACKs stall every request with a body by ~40 ms.
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers: dict[str, str] = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request; the body is read in full so the connection can be reused."""
        self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
        response = self.conn.getresponse()
        return response, response.read()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Iterable[int] = (200,),
    ) -> http.client.HTTPResponse:
        response, data = self.send(method, path, body, headers)
        if response.status not in tuple(expect):
            raise RegistryHTTPError(method, path, response.status, data)
        return response

    def path_of(self, location: str) -> str:
        """The path+query of a ``Location`` header (absolute or relative)."""
        parts = urlsplit(urljoin(self.base + "/", location))
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        response = self.request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
        location = self.path_of(response.getheader("Location") or "")
        separator = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{separator}digest={digest}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
            expect=(201,),
        )
        return digest

    def put_manifest(self, repo: str, ref: str, media_type: str, data: bytes) -> str:
        response = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            body=data,
            headers={"Content-Type": media_type},
            expect=(201,),
        )
        digest = sha256_digest(data)
        answered = response.getheader("Docker-Content-Digest")
        if answered and answered != digest:
            raise RuntimeError(f"registry stored manifest as {answered}, expected {digest}")
        return digest

    def close(self) -> None:
        self.conn.close()


def _random_layer() -> tuple[bytes, str]:
    """A gzipped tar holding one small random file; returns (blob, diff_id)."""
    payload = secrets.token_bytes(256)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"random-{secrets.token_hex(4)}.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), sha256_digest(tar_bytes)


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def push_image(
    registry_url: str,
    repo: str,
    tag: str | None = None,
    *,
    auth: Auth = None,
) -> str:
    """Push a fresh single-platform OCI image; return its manifest digest ``sha256:…``.

    The manifest is put by ``tag`` when given, else by digest (an untagged image).
    ``registry_url`` is ``http://127.0.0.1:PORT`` (a bare ``HOST:PORT`` is accepted too).
    """
    client = _Client(registry_url, auth)
    try:
        layer, diff_id = _random_layer()
        config = _canonical(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"test.nonce": secrets.token_hex(8)}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        )
        config_digest = client.push_blob(repo, config)
        layer_digest = client.push_blob(repo, layer)
        manifest = _canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}
                ],
            }
        )
        ref = tag if tag is not None else sha256_digest(manifest)
        return client.put_manifest(repo, ref, OCI_MANIFEST, manifest)
    finally:
        client.close()


def push_index(
    registry_url: str,
    repo: str,
    tag: str | None,
    child_digests: Sequence[str],
    *,
    auth: Auth = None,
) -> str:
    """Push an OCI image index over manifests already in ``repo``; return the index digest.

    Children are listed as linux/amd64, linux/arm64, linux/arm/v7, … in order (platforms are
    labels only; every child is an amd64 image). Put by ``tag``, or by digest when ``tag`` is None.
    """
    platforms = [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
        {"architecture": "ppc64le", "os": "linux"},
        {"architecture": "s390x", "os": "linux"},
    ]
    client = _Client(registry_url, auth)
    try:
        children: list[dict[str, object]] = []
        for i, digest in enumerate(child_digests):
            response, body = client.send(
                "GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": MANIFEST_ACCEPT}
            )
            if response.status != 200:
                raise RegistryHTTPError(
                    "GET", f"/v2/{repo}/manifests/{digest}", response.status, body
                )
            media_type = (response.getheader("Content-Type") or OCI_MANIFEST).split(";")[0]
            children.append(
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": len(body),
                    "platform": platforms[i % len(platforms)],
                }
            )
        index = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
        ref = tag if tag is not None else sha256_digest(index)
        return client.put_manifest(repo, ref, OCI_INDEX, index)
    finally:
        client.close()


def list_tags(registry_url: str, repo: str, *, auth: Auth = None) -> list[str]:
    """Tags of ``repo`` (sorted); ``[]`` when the repository does not exist."""
    client = _Client(registry_url, auth)
    try:
        path = f"/v2/{repo}/tags/list?n=10000"
        response, body = client.send("GET", path)
        if response.status == 404:
            return []
        if response.status != 200:
            raise RegistryHTTPError("GET", path, response.status, body)
        tags = json.loads(body).get("tags") or []
        return sorted(str(t) for t in tags)
    finally:
        client.close()


def get_manifest(registry_url: str, repo: str, ref: str, *, auth: Auth = None) -> tuple[str, bytes]:
    """``(media type, raw bytes)`` of the manifest at ``ref`` (tag or digest)."""
    client = _Client(registry_url, auth)
    try:
        path = f"/v2/{repo}/manifests/{ref}"
        response, body = client.send("GET", path, headers={"Accept": MANIFEST_ACCEPT})
        if response.status != 200:
            raise RegistryHTTPError("GET", path, response.status, body)
        return (response.getheader("Content-Type") or "").split(";")[0], body
    finally:
        client.close()


def manifest_exists(registry_url: str, repo: str, ref: str, *, auth: Auth = None) -> bool:
    """Whether ``HEAD /v2/REPO/manifests/REF`` finds it (200) or not (404); other statuses raise."""
    client = _Client(registry_url, auth)
    try:
        path = f"/v2/{repo}/manifests/{ref}"
        response, body = client.send("HEAD", path, headers={"Accept": MANIFEST_ACCEPT})
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        raise RegistryHTTPError("HEAD", path, response.status, body)
    finally:
        client.close()


def signature_tags(registry_url: str, repo: str, digest: str, *, auth: Auth = None) -> list[str]:
    """Tags in ``repo`` where cosign stored signatures of ``digest`` (``[]``: unsigned).

    cosign 2.x tags ``sha256-HEX.sig`` (a simple-signing manifest); cosign 3.x writes a bundle
    as an OCI 1.1 referrer and, since distribution 2.8 has no referrers API, tags the fallback
    index ``sha256-HEX``. cosign 2.x does not see 3.x signatures ("no signatures found", exit 10);
    3.x verifies both.
    """
    base = digest.replace(":", "-")
    wanted = {base, f"{base}.sig"}
    return [tag for tag in list_tags(registry_url, repo, auth=auth) if tag in wanted]
