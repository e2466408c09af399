"""The registry pre-flight client (``cosign_signer._registry``).

Behaviour is proven against the real distribution registry (Debian's ``docker-registry``): open,
htpasswd, token auth (with a token service in this process that the registry trusts) and TLS.
A tiny stdlib server stands in only for answers no real registry gives on demand (405 to HEAD, no
``Docker-Content-Digest``, 503/429, a wrong digest, a dropped connection).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cosign_signer._registry import (
    MANIFEST_MEDIA_TYPES,
    Challenge,
    RegistryClient,
    RegistryCredentials,
    parse_www_authenticate,
)
from cosign_signer.errors import (
    CosignError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnavailableError,
)
from cosign_signer.reference import ImageReference, parse_reference
from tests.infra.images import push_image, push_index
from tests.infra.registry import RegistryServer, free_port
from tests.infra.token_registry import TokenRegistry
from tests.infra.tools import Tools

LOGGER = "cosign_signer._registry"
ZERO_DIGEST = "sha256:" + "0" * 64


def ref(text: str) -> ImageReference:
    return parse_reference(text)


def isolated_client(tmp_path: Path, **kwargs: object) -> RegistryClient:
    """A client that sees no docker config and no credential helper of the machine."""
    environ = {"PATH": os.defpath, "HOME": str(tmp_path / "home")}
    options: dict[str, object] = {"environ": environ, "docker_config_dir": str(tmp_path / "none")}
    options.update(kwargs)
    return RegistryClient(**options)  # type: ignore[arg-type]


def creds_of(server: RegistryServer) -> RegistryCredentials:
    assert server.user is not None
    return RegistryCredentials(server.user, server.password)


def requests_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and " -> " in r.getMessage()]


# ---- WWW-Authenticate -------------------------------------------------------------------------


def test_parses_distribution_bearer_challenge() -> None:
    header = (
        'Bearer realm="http://127.0.0.1:5001/token",service="reg",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "http://127.0.0.1:5001/token",
                "service": "reg",
                "scope": "repository:team/app:pull,push",
                "error": "insufficient_scope",
            },
        )
    ]


def test_parses_several_challenges_in_one_and_several_headers() -> None:
    values = [
        'Bearer realm="https://auth.example/token", service="x", Basic realm="a, b"',
        "NEGOTIATE, basic Realm=unquoted",
    ]
    got = parse_www_authenticate(values)
    assert [c.scheme for c in got] == ["bearer", "basic", "negotiate", "basic"]
    assert got[0].params == {"realm": "https://auth.example/token", "service": "x"}
    assert got[1].params == {"realm": "a, b"}
    assert got[2].params == {}
    assert got[3].params == {"realm": "unquoted"}


def test_parses_escapes_blanks_and_token68() -> None:
    header = r'Basic  realm = "say \"hi\", \\ok" , charset="UTF-8"'
    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": 'say "hi", \\ok', "charset": "UTF-8"})
    ]
    # token68 credentials are skipped, padding included; the next challenge still parses
    assert parse_www_authenticate("Negotiate YWJjZA==, Basic realm=r") == [
        Challenge("negotiate", {}),
        Challenge("basic", {"realm": "r"}),
    ]


@pytest.mark.parametrize("junk", ["", "   ", ",,,", '="x"', 'Bearer realm="unterminated'])
def test_parser_never_raises_on_junk(junk: str) -> None:
    parse_www_authenticate(junk)


def test_unterminated_quote_takes_the_rest() -> None:
    assert parse_www_authenticate('Bearer realm="http://x/t, y') == [
        Challenge("bearer", {"realm": "http://x/t, y"})
    ]


# ---- reprs and options ------------------------------------------------------------------------


def test_credentials_repr_hides_the_password() -> None:
    creds = RegistryCredentials("alice", "hunter2-secret")
    assert "hunter2-secret" not in repr(creds)
    assert "alice" in repr(creds)
    client = RegistryClient(credentials=creds, environ={})
    assert "hunter2-secret" not in repr(client)
    assert "alice" not in repr(client)


def test_accept_lists_oci_and_docker_manifests_and_indexes() -> None:
    for media_type in (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ):
        assert media_type in MANIFEST_MEDIA_TYPES


def test_rejects_malformed_digest_and_tag_arguments(tmp_path: Path) -> None:
    client = isolated_client(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        client.manifest_exists(ref("127.0.0.1:1/app:v1"), "sha256:abc")
    with pytest.raises(ValueError, match="not a tag"):
        client.tag_exists(ref("127.0.0.1:1/app:v1"), "a/b")


# ---- docker config (as docker's CLI and so cosign read it) ------------------------------------


def write_config(directory: Path, config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("reg.example:5000", {"auth": b64("alice:pa:ss")}),
        ("https://reg.example:5000", {"auth": b64("alice:pa:ss")}),
        ("http://reg.example:5000/v2/", {"username": "alice", "password": "pa:ss"}),
    ],
)
def test_auths_entry_is_found_by_host(tmp_path: Path, key: str, entry: dict[str, str]) -> None:
    config_dir = write_config(
        tmp_path / "cfg", {"auths": {"other:1": {"auth": b64("x:y")}, key: entry}}
    )
    client = isolated_client(tmp_path, docker_config_dir=str(config_dir))
    creds = client._docker_creds(ref("reg.example:5000/app:v1"))
    assert creds is not None
    assert (creds.username, creds.password) == ("alice", "pa:ss")
    assert str(config_dir / "config.json") in creds.source
    assert "pa:ss" not in repr(creds)


def test_docker_hub_uses_the_index_v1_key(tmp_path: Path) -> None:
    config_dir = write_config(
        tmp_path / "cfg", {"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}}
    )
    client = isolated_client(tmp_path, docker_config_dir=str(config_dir))
    creds = client._docker_creds(ref("busybox:1.36"))
    assert creds is not None
    assert creds.username == "hub"


def test_docker_config_dir_comes_from_environ_then_home(tmp_path: Path) -> None:
    by_env = write_config(tmp_path / "env", {"auths": {"r.example": {"auth": b64("env:1")}}})
    home = tmp_path / "home"
    write_config(home / ".docker", {"auths": {"r.example": {"auth": b64("home:1")}}})
    client = RegistryClient(environ={"DOCKER_CONFIG": str(by_env), "HOME": str(home)})
    found = client._docker_creds(ref("r.example/app:v1"))
    assert found is not None
    assert found.username == "env"
    client = RegistryClient(environ={"HOME": str(home)})
    found = client._docker_creds(ref("r.example/app:v1"))
    assert found is not None
    assert found.username == "home"


def test_missing_entry_or_file_means_anonymous(tmp_path: Path) -> None:
    assert isolated_client(tmp_path)._docker_creds(ref("r.example/app:v1")) is None
    config_dir = write_config(tmp_path / "cfg", {"auths": {"r.example": {}}})
    client = isolated_client(tmp_path, docker_config_dir=str(config_dir))
    assert client._docker_creds(ref("r.example/app:v1")) is None


def test_broken_config_is_an_auth_error_without_content(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    (config_dir / "config.json").write_text('{"auths": {"r": {"auth": "secretish', encoding="utf-8")
    client = isolated_client(tmp_path, docker_config_dir=str(config_dir))
    with pytest.raises(RegistryAuthError, match="not valid JSON") as info:
        client._docker_creds(ref("r.example/app:v1"))
    assert "secretish" not in str(info.value)
    config_dir = write_config(tmp_path / "cfg2", {"auths": {"r.example": {"auth": b64("nocolon")}}})
    client = isolated_client(tmp_path, docker_config_dir=str(config_dir))
    with pytest.raises(RegistryAuthError, match="not base64 of 'user:password'") as info:
        client._docker_creds(ref("r.example/app:v1"))
    assert "nocolon" not in str(info.value)


# ---- credential helpers (the docker-credential-<name> protocol) -------------------------------

HELPER = """#!/bin/sh
# A docker credential helper: `get` reads the server URL on stdin, answers JSON on stdout.
[ "$1" = get ] || {{ echo "unsupported action $1"; exit 1; }}
read -r server || true
printf '%s\\n' "$server" >> "{log}"
if [ "$server" = "{server}" ]; then
    printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\\n' "$server"
    exit 0
fi
echo "credentials not found in native keychain"
exit 1
"""


def write_helper(
    bin_dir: Path, name: str, *, server: str, user: str, secret: str, body: str | None = None
) -> Path:
    """Write ``docker-credential-<name>`` into ``bin_dir``; return the file it logs requests to."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    text = (
        body
        if body is not None
        else HELPER.format(log=log, server=server, user=user, secret=secret)
    )
    script.write_text(text, encoding="utf-8")
    script.chmod(0o755)
    return log


def helper_client(tmp_path: Path, config: object, **kwargs: object) -> RegistryClient:
    config_dir = write_config(tmp_path / "cfg", config)
    environ = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.defpath}", "HOME": str(tmp_path)}
    return RegistryClient(environ=environ, docker_config_dir=str(config_dir), **kwargs)  # type: ignore[arg-type]


def test_cred_helper_for_the_host_is_asked_with_the_server_on_stdin(tmp_path: Path) -> None:
    log = write_helper(tmp_path / "bin", "xyz", server="r.example:5000", user="u", secret="s3")
    client = helper_client(tmp_path, {"credHelpers": {"r.example:5000": "xyz"}, "auths": {}})
    creds = client._docker_creds(ref("r.example:5000/app:v1"))
    assert creds is not None
    assert (creds.username, creds.password) == ("u", "s3")
    assert creds.source == "credential helper docker-credential-xyz"
    assert log.read_text().splitlines() == ["r.example:5000"]


def test_creds_store_is_used_and_not_found_means_anonymous(tmp_path: Path) -> None:
    log = write_helper(tmp_path / "bin", "store", server="elsewhere", user="u", secret="s")
    client = helper_client(tmp_path, {"credsStore": "store"})
    assert client._docker_creds(ref("r.example:5000/app:v1")) is None
    assert log.read_text().splitlines() == ["r.example:5000"]


def test_helper_token_username_means_identity_token(tmp_path: Path) -> None:
    write_helper(tmp_path / "bin", "tok", server="r.example", user="<token>", secret="refresh-me")
    client = helper_client(tmp_path, {"credHelpers": {"r.example": "tok"}})
    creds = client._docker_creds(ref("r.example/app:v1"))
    assert creds is not None
    assert (creds.username, creds.password, creds.identity_token) == ("", "", "refresh-me")


def test_missing_failing_and_hanging_helpers_are_auth_errors(tmp_path: Path) -> None:
    client = helper_client(tmp_path, {"credHelpers": {"r.example": "absent"}})
    with pytest.raises(RegistryAuthError, match=r"docker-credential-absent .* is not on PATH"):
        client._docker_creds(ref("r.example/app:v1"))

    write_helper(
        tmp_path / "bin",
        "broken",
        server="",
        user="",
        secret="",
        body="#!/bin/sh\necho 'keychain locked'\nexit 3\n",
    )
    client = helper_client(tmp_path, {"credHelpers": {"r.example": "broken"}})
    with pytest.raises(RegistryAuthError, match=r"exit code 3\): keychain locked"):
        client._docker_creds(ref("r.example/app:v1"))

    write_helper(
        tmp_path / "bin", "slow", server="", user="", secret="", body="#!/bin/sh\nexec sleep 30\n"
    )
    client = helper_client(tmp_path, {"credHelpers": {"r.example": "slow"}}, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryAuthError, match=r"did not answer within 0\.5s"):
        client._docker_creds(ref("r.example/app:v1"))
    assert time.monotonic() - started < 10

    client = helper_client(tmp_path, {"credHelpers": {"r.example": "../../bin/sh"}})
    with pytest.raises(RegistryAuthError, match="invalid credential helper name"):
        client._docker_creds(ref("r.example/app:v1"))


# ---- the real registry: open and htpasswd ------------------------------------------------------


@pytest.mark.integration
def test_open_registry_tag_and_digest(open_registry: RegistryServer, tmp_path: Path) -> None:
    digest = push_image(open_registry.url, "app", "v1")
    client = isolated_client(tmp_path)
    assert client.resolve(ref(f"{open_registry.host}/app:v1")) == digest
    assert client.resolve(ref(f"{open_registry.host}/app@{digest}")) == digest
    assert client.resolve(ref(f"{open_registry.host}/app:v1@{digest}")) == digest


@pytest.mark.integration
def test_htpasswd_registry_tag_and_digest(registry: RegistryServer, tmp_path: Path) -> None:
    digest = push_image(registry.url, "app", "v1", auth=registry.credentials)
    client = isolated_client(tmp_path, credentials=creds_of(registry))
    assert client.resolve(ref(f"{registry.host}/app:v1")) == digest
    assert client.resolve(ref(f"{registry.host}/app@{digest}")) == digest


@pytest.mark.integration
@pytest.mark.parametrize("secured", [False, True], ids=["open", "htpasswd"])
def test_image_index_digest_and_tag(
    secured: bool, registry: RegistryServer, open_registry: RegistryServer, tmp_path: Path
) -> None:
    server = registry if secured else open_registry
    children = [push_image(server.url, "multi", auth=server.credentials) for _ in range(2)]
    index = push_index(server.url, "multi", "v2", children, auth=server.credentials)
    client = isolated_client(tmp_path, credentials=creds_of(registry) if secured else None)
    # The index itself, not the amd64 child a registry hands to clients that don't accept indexes.
    assert client.resolve(ref(f"{server.host}/multi:v2")) == index
    assert client.resolve(ref(f"{server.host}/multi@{index}")) == index
    assert client.manifest_exists(ref(f"{server.host}/multi:v2"), children[1])


@pytest.mark.integration
@pytest.mark.parametrize("secured", [False, True], ids=["open", "htpasswd"])
def test_missing_tag_digest_and_repository(
    secured: bool, registry: RegistryServer, open_registry: RegistryServer, tmp_path: Path
) -> None:
    server = registry if secured else open_registry
    push_image(server.url, "app", "v1", auth=server.credentials)
    client = isolated_client(tmp_path, credentials=creds_of(registry) if secured else None)

    missing_tag = f"{server.host}/app:no-such-tag"
    with pytest.raises(ImageNotFoundError) as info:
        client.resolve(ref(missing_tag))
    error = info.value
    assert error.reference == missing_tag
    assert error.argv == ()
    assert error.transient is False
    assert "tag 'no-such-tag' not found" in error.message
    assert "MANIFEST_UNKNOWN" in error.message
    assert missing_tag in str(error)

    missing_digest = f"{server.host}/app@{ZERO_DIGEST}"
    with pytest.raises(ImageNotFoundError, match=f"digest {ZERO_DIGEST} not found") as info:
        client.resolve(ref(missing_digest))
    assert info.value.reference == missing_digest

    # distribution 2.8 says MANIFEST_UNKNOWN (not NAME_UNKNOWN) for a repository it never saw
    with pytest.raises(ImageNotFoundError, match=r"not found|does not exist"):
        client.resolve(ref(f"{server.host}/never/pushed:v1"))


@pytest.mark.integration
def test_exists_helpers(registry: RegistryServer, tmp_path: Path) -> None:
    digest = push_image(registry.url, "app", "exists", auth=registry.credentials)
    client = isolated_client(tmp_path, credentials=creds_of(registry))
    app = ref(f"{registry.host}/app:exists")
    assert client.manifest_exists(app, digest)
    assert not client.manifest_exists(app, ZERO_DIGEST)
    assert client.tag_exists(app, "exists")
    assert not client.tag_exists(app, "sha256-" + "0" * 64 + ".sig")


@pytest.mark.integration
def test_wrong_password_is_an_auth_error_without_the_password(
    registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    push_image(registry.url, "app", "v1", auth=registry.credentials)
    bad = "definitely-wrong-Pa55"
    client = isolated_client(tmp_path, credentials=RegistryCredentials(registry.user, bad))
    with pytest.raises(RegistryAuthError) as info:
        client.resolve(ref(f"{registry.host}/app:v1"))
    error = info.value
    assert "were sent and refused" in error.message
    assert "401" in error.message
    assert error.transient is False
    assert error.reference == f"{registry.host}/app:v1"
    for text in (str(error), repr(error), caplog.text):
        assert bad not in text
        assert b64(f"{registry.user}:{bad}") not in text


@pytest.mark.integration
def test_no_credentials_on_htpasswd_registry(registry: RegistryServer, tmp_path: Path) -> None:
    push_image(registry.url, "app", "v1", auth=registry.credentials)
    with pytest.raises(RegistryAuthError, match="no credentials were sent"):
        isolated_client(tmp_path).resolve(ref(f"{registry.host}/app:v1"))


@pytest.mark.integration
def test_closed_port_is_transient_unavailable(tools: Tools, tmp_path: Path) -> None:
    reference = f"127.0.0.1:{free_port()}/app:v1"
    with pytest.raises(RegistryUnavailableError, match="connection refused") as info:
        isolated_client(tmp_path, timeout=5).resolve(ref(reference))
    assert info.value.transient is True
    assert info.value.reference == reference


@pytest.mark.integration
def test_basic_scheme_is_remembered_per_registry(
    registry: RegistryServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    digest = push_image(registry.url, "app", "v1", auth=registry.credentials)
    client = isolated_client(tmp_path, credentials=creds_of(registry))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    client.resolve(ref(f"{registry.host}/app:v1"))
    assert [m.rsplit(" (", 1)[0] for m in requests_logged(caplog)] == [
        f"HEAD {registry.url}/v2/app/manifests/v1 -> 401",
        f"HEAD {registry.url}/v2/app/manifests/v1 -> 200",
    ]
    caplog.clear()
    client.resolve(ref(f"{registry.host}/app@{digest}"))
    assert [m.rsplit(" (", 1)[0] for m in requests_logged(caplog)] == [
        f"HEAD {registry.url}/v2/app/manifests/{digest} -> 200",
    ]


@pytest.mark.integration
def test_credentials_from_docker_config_env(registry: RegistryServer, tmp_path: Path) -> None:
    digest = push_image(registry.url, "app", "v1", auth=registry.credentials)
    config_dir = registry.write_docker_config(tmp_path / "docker-config")
    client = RegistryClient(environ={"DOCKER_CONFIG": str(config_dir), "PATH": os.defpath})
    assert client.resolve(ref(f"{registry.host}/app:v1")) == digest
    client = RegistryClient(environ={"PATH": os.defpath}, docker_config_dir=str(config_dir))
    assert client.resolve(ref(f"{registry.host}/app:v1")) == digest


@pytest.mark.integration
@pytest.mark.parametrize("how", ["credHelpers", "credsStore"])
def test_credentials_from_a_credential_helper(
    how: str, registry: RegistryServer, tmp_path: Path
) -> None:
    digest = push_image(registry.url, "app", "v1", auth=registry.credentials)
    assert registry.user is not None
    assert registry.password is not None
    log = write_helper(
        tmp_path / "bin", "xyz", server=registry.host, user=registry.user, secret=registry.password
    )
    config = (
        {"credHelpers": {registry.host: "xyz"}} if how == "credHelpers" else {"credsStore": "xyz"}
    )
    client = helper_client(tmp_path, config)
    assert client.resolve(ref(f"{registry.host}/app:v1")) == digest
    assert client.resolve(ref(f"{registry.host}/app@{digest}")) == digest
    assert log.read_text().splitlines() == [registry.host]  # asked once, then cached


@pytest.mark.integration
def test_sixty_concurrent_resolves_on_loopback(registry: RegistryServer, tmp_path: Path) -> None:
    digests = [
        push_image(registry.url, "bench", f"t{i}", auth=registry.credentials) for i in range(6)
    ]
    refs = [ref(f"{registry.host}/bench:t{i % 6}") for i in range(60)]
    client = isolated_client(tmp_path, credentials=creds_of(registry))
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(client.resolve, refs))
    elapsed = time.perf_counter() - started
    assert got == [digests[i % 6] for i in range(60)]
    assert elapsed < 3.0, f"60 resolves took {elapsed:.2f}s"


# ---- the real registry with token auth ---------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(tools: Tools) -> Iterator[TokenRegistry]:
    with TokenRegistry(tools.registry) as server:
        with server.open_for_push() as url:
            server.digests = {  # type: ignore[attr-defined]
                "app:v1": push_image(url, "app", "v1"),
                "other:v1": push_image(url, "other", "v1"),
            }
        yield server


def token_digest(server: TokenRegistry, name: str) -> str:
    digest: str = server.digests[name]  # type: ignore[attr-defined]
    return digest


@pytest.mark.integration
def test_bearer_flow_with_basic_credentials_and_token_cache(
    token_registry: TokenRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    token_registry.tokens.clear()
    creds = RegistryCredentials(token_registry.user, token_registry.password)
    client = isolated_client(tmp_path, credentials=creds)
    host = token_registry.host
    assert client.resolve(ref(f"{host}/app:v1")) == token_digest(token_registry, "app:v1")
    (first,) = token_registry.tokens.requests
    assert (first.method, first.grant, first.user, first.status) == (
        "GET",
        "basic",
        "tokenuser",
        200,
    )
    assert first.scopes == ("repository:app:pull",)
    assert first.service == token_registry.tokens.service

    # same registry and scope: the cached token, no second trip to the token service
    digest = token_digest(token_registry, "app:v1")
    assert client.resolve(ref(f"{host}/app@{digest}")) == digest
    assert client.tag_exists(ref(f"{host}/app:v1"), "v1")
    assert len(token_registry.tokens.requests) == 1
    # and no anonymous attempt first: the Bearer scheme is remembered for the registry
    logged = requests_logged(caplog)
    assert [m for m in logged if "-> 401" in m] == logged[:1]

    # another repository is another scope: one more token
    assert client.resolve(ref(f"{host}/other:v1")) == token_digest(token_registry, "other:v1")
    assert [r.scopes for r in token_registry.tokens.requests] == [
        ("repository:app:pull",),
        ("repository:other:pull",),
    ]

    secrets_seen = [token_registry.password, *token_registry.tokens.issued_tokens]
    for secret in secrets_seen:
        assert secret not in caplog.text


@pytest.mark.integration
def test_bearer_wrong_credentials_and_anonymous(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    host = token_registry.host
    token_registry.tokens.clear()
    wrong = RegistryCredentials(token_registry.user, "not-the-password")
    with pytest.raises(RegistryAuthError, match=r"token service .* refused") as info:
        isolated_client(tmp_path, credentials=wrong).resolve(ref(f"{host}/app:v1"))
    assert "were sent and refused" in info.value.message
    assert "not-the-password" not in str(info.value)
    assert [(r.grant, r.status) for r in token_registry.tokens.requests] == [("basic", 401)]

    # anonymous: the token service hands out a token without access; the registry refuses it
    token_registry.tokens.clear()
    with pytest.raises(RegistryAuthError, match="no credentials were sent"):
        isolated_client(tmp_path).resolve(ref(f"{host}/app:v1"))
    assert [(r.grant, r.status) for r in token_registry.tokens.requests] == [("anonymous", 200)]


@pytest.mark.integration
def test_bearer_missing_tag_is_not_found(token_registry: TokenRegistry, tmp_path: Path) -> None:
    creds = RegistryCredentials(token_registry.user, token_registry.password)
    with pytest.raises(ImageNotFoundError, match="MANIFEST_UNKNOWN"):
        isolated_client(tmp_path, credentials=creds).resolve(ref(f"{token_registry.host}/app:nope"))


@pytest.mark.integration
def test_bearer_token_fetched_once_for_concurrent_resolves(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    token_registry.tokens.clear()
    creds = RegistryCredentials(token_registry.user, token_registry.password)
    client = isolated_client(tmp_path, credentials=creds)
    refs = [ref(f"{token_registry.host}/app:v1")] * 60
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        got = set(pool.map(client.resolve, refs))
    elapsed = time.perf_counter() - started
    assert got == {token_digest(token_registry, "app:v1")}
    assert len(token_registry.tokens.requests) == 1
    assert elapsed < 3.0, f"60 resolves took {elapsed:.2f}s"


@pytest.mark.integration
def test_bearer_with_identity_token_from_docker_config(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    token_registry.tokens.clear()
    config_dir = write_config(
        tmp_path / "cfg",
        {"auths": {token_registry.host: {"identitytoken": token_registry.refresh_token}}},
    )
    client = isolated_client(tmp_path, docker_config_dir=str(config_dir))
    assert client.resolve(ref(f"{token_registry.host}/app:v1")) == token_digest(
        token_registry, "app:v1"
    )
    (request,) = token_registry.tokens.requests
    assert (request.method, request.grant, request.user) == ("POST", "refresh_token", "tokenuser")


@pytest.mark.integration
def test_bearer_answer_with_access_token_field(tools: Tools, tmp_path: Path) -> None:
    with TokenRegistry(tools.registry, token_field="access_token") as server:
        with server.open_for_push() as url:
            digest = push_image(url, "app", "v1")
        creds = RegistryCredentials(server.user, server.password)
        assert (
            isolated_client(tmp_path, credentials=creds).resolve(ref(f"{server.host}/app:v1"))
            == digest
        )


# ---- the real registry over TLS on loopback -----------------------------------------------------


@contextlib.contextmanager
def tls_registry(binary: Path, workdir: Path) -> Iterator[str]:
    """``docker-registry`` serving HTTPS (self-signed, 127.0.0.1) on a free port: yields host."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (workdir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = free_port()
    config = {
        "version": "0.1",
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": "tls-test",
            "tls": {"certificate": str(workdir / "cert.pem"), "key": str(workdir / "key.pem")},
        },
    }
    (workdir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with (workdir / "registry.log").open("ab") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", str(workdir / "config.json")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    try:
        context = ssl.create_default_context(
            cadata=cert.public_bytes(serialization.Encoding.PEM).decode()
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/v2/", context=context, timeout=1
                ):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((workdir / "registry.log").read_text()) from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.mark.integration
def test_tls_loopback_registry_verification_and_insecure(
    tools: Tools, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with tls_registry(tools.registry, tmp_path) as host:
        # Plain HTTP first (loopback); the Go server's "HTTP request to an HTTPS server" answer
        # switches to HTTPS, where the self-signed certificate fails verification: not transient.
        with pytest.raises(RegistryUnavailableError, match="TLS verification failed") as info:
            isolated_client(tmp_path).resolve(ref(f"{host}/app:v1"))
        assert info.value.transient is False

        caplog.set_level(logging.DEBUG, logger=LOGGER)
        client = isolated_client(tmp_path, allow_insecure=True)
        for _ in range(3):  # reached (a real 404 over TLS), and the WARNING comes once
            with pytest.raises(ImageNotFoundError, match="MANIFEST_UNKNOWN"):
                client.resolve(ref(f"{host}/app:v1"))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
        assert len(warnings) == 1
        assert host in warnings[0].getMessage()
        assert any(m.startswith(f"HEAD https://{host}/") for m in requests_logged(caplog))


# ---- answers no real registry gives on demand ---------------------------------------------------

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPES[1]}).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@pytest.fixture
def odd_registry() -> Iterator[tuple[str, list[str]]]:
    """A stdlib server behaving like registries that refuse HEAD, omit digests or fail.

    Repositories: ``nohead`` (405 to HEAD, GET without ``Docker-Content-Digest``), ``busy``
    (503), ``limited`` (429 + Retry-After), ``liar`` (answers any digest with another one),
    ``drop`` (closes the connection without answering). Yields (host:port, request log).
    """
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            seen.append(f"{self.command} {self.path}")
            repo = self.path.split("/")[2]
            if repo == "drop":
                self.close_connection = True
                return
            if repo == "nohead" and self.command == "HEAD":
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, headers = 200, {"Content-Type": MANIFEST_MEDIA_TYPES[1]}
            if repo == "busy":
                status = 503
            elif repo == "limited":
                status, headers = 429, {"Retry-After": "7"}
            elif repo == "liar":
                headers["Docker-Content-Digest"] = "sha256:" + "1" * 64
            payload = MANIFEST if status == 200 else b'{"errors":[{"code":"UNAVAILABLE"}]}'
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_head_refused_falls_back_to_get_and_hashes_the_body(
    odd_registry: tuple[str, list[str]], tmp_path: Path
) -> None:
    host, seen = odd_registry
    client = isolated_client(tmp_path)
    assert client.resolve(ref(f"{host}/nohead:v1")) == MANIFEST_DIGEST
    assert seen == ["HEAD /v2/nohead/manifests/v1", "GET /v2/nohead/manifests/v1"]
    assert client.resolve(ref(f"{host}/nohead@{MANIFEST_DIGEST}")) == MANIFEST_DIGEST
    with pytest.raises(RegistryUnavailableError, match="different digest"):
        client.resolve(ref(f"{host}/nohead@{ZERO_DIGEST}"))


@pytest.mark.parametrize(
    ("repo", "pattern"),
    [
        ("busy", "503 Service Unavailable"),
        ("limited", "429 Too Many Requests.*retry after 7s"),
        ("drop", "closed the connection|connection reset"),
    ],
)
def test_server_failures_are_transient(
    odd_registry: tuple[str, list[str]], tmp_path: Path, repo: str, pattern: str
) -> None:
    host, _ = odd_registry
    with pytest.raises(RegistryUnavailableError, match=pattern) as info:
        isolated_client(tmp_path).resolve(ref(f"{host}/{repo}:v1"))
    assert info.value.transient is True


def test_a_different_digest_for_a_digest_request_is_refused(
    odd_registry: tuple[str, list[str]], tmp_path: Path
) -> None:
    host, _ = odd_registry
    with pytest.raises(RegistryUnavailableError, match="different digest") as info:
        isolated_client(tmp_path).resolve(ref(f"{host}/liar@{MANIFEST_DIGEST}"))
    assert info.value.transient is False
    assert isinstance(info.value, CosignError)


def test_timeout_is_transient(tmp_path: Path) -> None:
    """A server that accepts and never answers: the request times out (every request has one)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match="timed out") as info:
            isolated_client(tmp_path, timeout=0.3).resolve(ref(f"{host}/app:v1"))
        assert time.monotonic() - started < 5
        assert info.value.transient is True
