"""Registry pre-flight: resolve tags to digests and prove digests exist, before cosign runs.

cosign 2.x signs a digest that is not in the registry and exits 0, so the library asks the registry
itself, through the OCI distribution API: ``HEAD /v2/<repo>/manifests/<tag-or-digest>`` (``GET``
where HEAD is refused or answers no ``Docker-Content-Digest``).

Authentication follows the registry's ``WWW-Authenticate`` challenge, anonymous first: ``Basic``
with the configured credentials, or ``Bearer`` with a token fetched from the challenge's realm.
Without configured credentials, they are read the way cosign reads them: the docker config's
``auths``, ``credHelpers`` and ``credsStore`` (``docker-credential-<name> get``).

Standard library only (``urllib``). Secrets (passwords, identity tokens, bearer tokens) are never
logged, never put in exception text and never shown in a repr; DEBUG logs name the method, URL and
status only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from email.message import Message
from pathlib import Path
from typing import Any

import attrs

from cosign_signer import _process
from cosign_signer.errors import (
    CosignError,
    CosignNotFoundError,
    ImageNotFoundError,
    RegistryAuthError,
    RegistryUnavailableError,
)
from cosign_signer.reference import ImageReference

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "Challenge",
    "RegistryClient",
    "RegistryCredentials",
    "parse_www_authenticate",
]

_log = logging.getLogger(__name__)

#: Manifest media types sent in ``Accept`` (OCI and Docker v2, images and indexes first; the old
#: schema 1 types last, as cosign's registry library lists them too, so both see the same digest).
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_HELPER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HELPER_NOT_FOUND = "credentials not found in native keychain"
_DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution's own limit for a manifest
_MAX_SMALL_BODY = 64 * 1024  # error bodies and token answers
_TOKEN_MIN_LIFETIME = 60  # seconds: the token spec's default when expires_in is absent or smaller
_TOKEN_MARGIN = 10.0  # renew this long before a token expires
_HTTP_TO_HTTPS_HINT = "http request to an https server"
_USER_AGENT = "cosign-signer (registry pre-flight)"

_STATUS_BAD_REQUEST = 400
_STATUS_UNAUTHORIZED = 401
_STATUS_FORBIDDEN = 403
_STATUS_NOT_FOUND = 404
_STATUS_NOT_ALLOWED = 405
_STATUS_TOO_MANY = 429
_STATUS_NOT_IMPLEMENTED = 501
_STATUS_SERVER_ERROR = 500


# ---- public value types -------------------------------------------------------------------------


@attrs.frozen
class RegistryCredentials:
    """A registry user name and password (used for every registry the client talks to).

    Both must be non-empty to be used; otherwise the client reads the docker config, as cosign
    does when it is given no registry credentials of its own.
    """

    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Challenge:
    """One ``WWW-Authenticate`` challenge: the scheme (lower case) and its parameters.

    Parameter names are lower case; values are unquoted.
    """

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header value(s) into challenges (RFC 7235 syntax).

    Handles several challenges in one value (``Bearer realm="a",scope="x", Basic realm="b"``),
    quoted values with commas and backslash escapes, unquoted values, and token68 credentials
    (ignored). Junk is skipped rather than raised on: a registry's header is advice.
    """
    texts = [values] if isinstance(values, str) else list(values)
    challenges: list[Challenge] = []
    for text in texts:
        challenges.extend(_parse_one_header(text))
    return challenges


def _parse_one_header(text: str) -> list[Challenge]:
    out: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    for token, value, after_comma in _header_items(text):
        if value is not None:  # an auth-param
            if scheme is not None:
                params[token.lower()] = value
            continue
        if scheme is not None and not params and not after_comma:
            continue  # a token68 right after the scheme ("Negotiate abc"): ignored
        if scheme is not None:
            out.append(Challenge(scheme=scheme.lower(), params=params))
        scheme, params = token, {}
    if scheme is not None:
        out.append(Challenge(scheme=scheme.lower(), params=params))
    return out


def _header_items(text: str) -> Iterable[tuple[str, str | None, bool]]:
    """Yield ``(token, value, comma_before)``: value is None for a bare token (a scheme)."""
    i, n = 0, len(text)
    comma = False
    while i < n:
        if text[i] in " \t,":
            comma = comma or text[i] == ","
            i += 1
            continue
        start = i
        while i < n and text[i] not in ' \t,="':
            i += 1
        token = text[start:i]
        if not token:  # a stray '=' or '"': skip it
            i += 1
            continue
        j = _skip_blanks(text, i)
        if j < n and text[j] == "=":
            if j + 1 >= n or text[j + 1] in "=,":  # token68 padding ("abc=="), not a parameter
                i = j + 1
                while i < n and text[i] == "=":
                    i += 1
                continue
            value, i = _read_value(text, _skip_blanks(text, j + 1))
            yield token, value, comma
        else:
            i = j
            yield token, None, comma
            comma = False


def _skip_blanks(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _read_value(text: str, i: int) -> tuple[str, int]:
    """Read a parameter value at ``i`` (quoted or not); return (value, next index)."""
    if i < len(text) and text[i] == '"':
        return _read_quoted(text, i + 1)
    end = i
    while end < len(text) and text[end] not in " \t,":
        end += 1
    return text[i:end], end


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted-string body starting after the opening quote; return (value, next index)."""
    chars: list[str] = []
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            chars.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(chars), i + 1
        chars.append(char)
        i += 1
    return "".join(chars), i  # unterminated: take the rest


# ---- internal value types -----------------------------------------------------------------------


@attrs.frozen
class _Creds:
    """Credentials found for one registry and where they came from (``source``, for messages)."""

    source: str
    username: str = ""
    password: str = attrs.field(default="", repr=False)
    identity_token: str = attrs.field(default="", repr=False)

    @property
    def basic_header(self) -> str | None:
        if not self.username and not self.password:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@attrs.frozen
class _Response:
    method: str
    url: str
    status: int
    reason: str
    headers: Message = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)


@attrs.define
class _Token:
    value: str = attrs.field(repr=False)
    expires_at: float
    with_credentials: bool


@attrs.define
class _RegistryState:
    """What the client learned about one registry (guarded by the client's lock)."""

    scheme: str  # http or https
    auth_scheme: str | None = None  # None (anonymous works so far), "basic" or "bearer"
    realm: str | None = None
    service: str | None = None
    creds_resolved: bool = False
    creds: _Creds | None = None


@attrs.frozen
class _Lookup:
    found: bool
    digest: str | None = None
    error_code: str = ""


class _HeadKeepingRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects without turning HEAD into GET (urllib does, before Python 3.13)."""

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"
        return new


# ---- the client ---------------------------------------------------------------------------------


class RegistryClient:
    """Ask registries whether manifests exist, and for the digest a tag points at.

    Safe to use from many threads at once: what it learns (which auth scheme a registry wants,
    credentials, bearer tokens per registry and scope) is cached under a lock, and a token is
    fetched once per registry and scope even when many threads need it together.

    ``allow_http`` talks plain HTTP to every registry (loopback registries always get HTTP);
    ``allow_insecure`` keeps HTTPS but skips certificate verification (logged as a WARNING once per
    registry). ``timeout`` bounds every request and every credential helper run.
    ``docker_config_dir`` defaults to ``$DOCKER_CONFIG`` or ``~/.docker``; ``environ`` (default
    ``os.environ``) supplies ``DOCKER_CONFIG``, ``HOME``, ``PATH`` (for credential helpers, which
    also get it as their environment) and the ``*_proxy`` variables.
    """

    def __init__(
        self,
        *,
        credentials: RegistryCredentials | None = None,
        allow_http: bool = False,
        allow_insecure: bool = False,
        timeout: float = 30.0,
        docker_config_dir: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._credentials = credentials
        self._allow_http = allow_http
        self._allow_insecure = allow_insecure
        self._timeout = timeout
        self._environ: dict[str, str] = dict(os.environ if environ is None else environ)
        self._config_dir = Path(
            docker_config_dir
            or self._environ.get("DOCKER_CONFIG")
            or Path(self._environ.get("HOME") or Path.home()) / ".docker"
        )
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, ...], threading.Lock] = {}
        self._states: dict[str, _RegistryState] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._warned_insecure: set[str] = set()
        self._docker_config: dict[str, Any] | None = None
        self._proxies = _proxies_from(self._environ)
        self._openers: dict[tuple[bool, str], urllib.request.OpenerDirector] = {}

    def __repr__(self) -> str:
        return (
            f"RegistryClient(credentials={'configured' if self._configured_creds() else 'none'}, "
            f"allow_http={self._allow_http}, allow_insecure={self._allow_insecure}, "
            f"timeout={self._timeout:g}, docker_config_dir={str(self._config_dir)!r})"
        )

    # ---- public API -----------------------------------------------------------------------------

    def resolve(self, ref: ImageReference) -> str:
        """Return the manifest digest (``sha256:<64 hex>``) ``ref`` names, proving it exists.

        A tag becomes the digest it points at; a digest is returned as given once the registry
        has confirmed it. Raises :class:`ImageNotFoundError` (404), :class:`RegistryAuthError`
        (401/403 after authenticating) or :class:`RegistryUnavailableError` (connection failures,
        timeouts, 5xx, 429; transient).
        """
        lookup = self._lookup(ref, ref.manifest_ref, want_digest=True, want_code=True)
        if not lookup.found or lookup.digest is None:
            message = _not_found_message(ref, lookup.error_code)
            raise ImageNotFoundError(message, reference=ref.original)
        return lookup.digest

    def manifest_exists(self, ref: ImageReference, digest: str) -> bool:
        """Whether manifest ``digest`` exists in ``ref``'s repository (``ref``'s own tag unused).

        Raises the same errors as :meth:`resolve` for anything but "found" and "not found".
        """
        if not _DIGEST_RE.fullmatch(digest):
            raise ValueError(f"expected 'sha256:' and 64 lower-case hex characters, got {digest!r}")
        return self._lookup(ref, digest, want_digest=False, want_code=False).found

    def tag_exists(self, ref: ImageReference, tag: str) -> bool:
        """Whether ``tag`` (e.g. a signature tag ``sha256-<hex>.sig``) is in ``ref``'s repo."""
        if not tag or "/" in tag or tag.startswith("sha256:"):
            raise ValueError(f"not a tag: {tag!r}")
        return self._lookup(ref, tag, want_digest=False, want_code=False).found

    # ---- manifest lookups -----------------------------------------------------------------------

    def _lookup(
        self, ref: ImageReference, manifest_ref: str, *, want_digest: bool, want_code: bool
    ) -> _Lookup:
        expected = manifest_ref if manifest_ref.startswith("sha256:") else None
        response = self._manifest_request(ref, manifest_ref, "HEAD")
        if response.status in (_STATUS_NOT_ALLOWED, _STATUS_NOT_IMPLEMENTED):
            response = self._manifest_request(ref, manifest_ref, "GET")
        if response.status == _STATUS_NOT_FOUND:
            code = _error_codes(response.body)
            if not code and want_code and response.method == "HEAD":
                # HEAD answers carry no body: ask again to learn MANIFEST_UNKNOWN vs NAME_UNKNOWN.
                again = self._manifest_request(ref, manifest_ref, "GET")
                if again.status == _STATUS_NOT_FOUND:
                    code = _error_codes(again.body)
                elif again.status // 100 == 2:  # noqa: PLR2004 - appeared in between
                    response = again
            if response.status == _STATUS_NOT_FOUND:
                return _Lookup(found=False, error_code=code)
        if response.status // 100 != 2:  # noqa: PLR2004 - any 2xx
            raise self._status_error(ref, response)

        digest = _header_digest(response.headers)
        if digest is None and (want_digest or expected):
            if response.method == "HEAD":
                response = self._manifest_request(ref, manifest_ref, "GET")
                if response.status // 100 != 2:  # noqa: PLR2004
                    raise self._status_error(ref, response)
                digest = _header_digest(response.headers)
            if digest is None:
                digest = "sha256:" + hashlib.sha256(response.body).hexdigest()
        if expected is not None and digest is not None and digest != expected:
            raise RegistryUnavailableError(
                f"registry {ref.registry} answered a request for manifest {expected} with a "
                f"different digest ({digest}); refusing to trust it (a broken registry or a proxy "
                "in between)",
                reference=ref.original,
                transient=False,
            )
        return _Lookup(found=True, digest=digest)

    def _manifest_request(self, ref: ImageReference, manifest_ref: str, method: str) -> _Response:
        state = self._state(ref)
        path = f"/v2/{ref.repository}/manifests/{urllib.parse.quote(manifest_ref, safe=':')}"
        response = self._authorized(ref, method, path, state)
        if (
            response.status == _STATUS_BAD_REQUEST
            and state.scheme == "http"
            and ref.is_loopback
            and not self._allow_http
            and self._speaks_https_only(ref, response)
        ):
            # A loopback registry that only speaks TLS: cosign tries https first; switch for good.
            _log.debug("registry %s speaks HTTPS only; switching to https", ref.api_host)
            with self._lock:
                state.scheme = "https"
            response = self._authorized(ref, method, path, state)
        return response

    def _speaks_https_only(self, ref: ImageReference, response: _Response) -> bool:
        """Whether a 400 is Go's answer to plain HTTP on a TLS port (HEAD answers have no body)."""
        body = response.body
        if response.method == "HEAD":
            probe = self._send(
                ref, "GET", f"http://{ref.api_host}/v2/", {}, None, read_limit=_MAX_SMALL_BODY
            )
            if probe.status != _STATUS_BAD_REQUEST:
                return False
            body = probe.body
        return _HTTP_TO_HTTPS_HINT in body.decode("utf-8", "replace").lower()

    def _status_error(
        self,
        ref: ImageReference,
        response: _Response,
        *,
        what_request: str = "the manifest request",
    ) -> CosignError:
        code = _error_codes(response.body)
        said = f" ({code})" if code else ""
        what = (
            f"{response.method} {response.url} answered {response.status} {response.reason}{said}"
        )
        if response.status == _STATUS_TOO_MANY or response.status >= _STATUS_SERVER_ERROR:
            retry_after = response.headers.get("Retry-After")
            hint = f"; it asks to retry after {retry_after}s" if retry_after else ""
            return RegistryUnavailableError(
                f"registry {ref.registry} is unavailable: {what}{hint}", reference=ref.original
            )
        return CosignError(
            f"registry {ref.registry} refused {what_request}: {what}", reference=ref.original
        )

    # ---- authentication -------------------------------------------------------------------------

    def _authorized(
        self, ref: ImageReference, method: str, path: str, state: _RegistryState
    ) -> _Response:
        """Send one request, answer an auth challenge once; raise RegistryAuthError if refused."""
        default_scope = f"repository:{ref.repository}:pull"
        url = f"{state.scheme}://{ref.api_host}{path}"
        authorization, with_creds = self._preemptive_authorization(ref, state, default_scope)
        read_limit = _MAX_MANIFEST_BYTES if method == "GET" else _MAX_SMALL_BODY
        headers = {"Accept": _ACCEPT}
        response = self._send(ref, method, url, headers, authorization, read_limit=read_limit)
        if response.status == _STATUS_UNAUTHORIZED:
            challenges = parse_www_authenticate(response.headers.get_all("WWW-Authenticate") or [])
            self._forget_token(ref.api_host, authorization)  # refused (expired, other scope)
            authorization, with_creds = self._answer_challenge(
                ref, state, challenges, default_scope, response
            )
            response = self._send(ref, method, url, headers, authorization, read_limit=read_limit)
        if response.status in (_STATUS_UNAUTHORIZED, _STATUS_FORBIDDEN):
            self._forget_token(ref.api_host, authorization)
            raise self._auth_error(ref, state, response, sent_credentials=with_creds)
        return response

    def _preemptive_authorization(
        self, ref: ImageReference, state: _RegistryState, scope: str
    ) -> tuple[str | None, bool]:
        """The Authorization header to send first, from what the registry asked for before."""
        if state.auth_scheme == "basic":
            creds = self._creds_for(ref, state)
            header = creds.basic_header if creds else None
            return header, header is not None
        if state.auth_scheme == "bearer" and state.realm is not None:
            token = self._token(ref, state, state.realm, state.service, scope)
            return f"Bearer {token.value}", token.with_credentials
        return None, False

    def _answer_challenge(
        self,
        ref: ImageReference,
        state: _RegistryState,
        challenges: list[Challenge],
        default_scope: str,
        response: _Response,
    ) -> tuple[str, bool]:
        by_scheme = {c.scheme: c for c in challenges}
        bearer, basic = by_scheme.get("bearer"), by_scheme.get("basic")
        if bearer is not None and bearer.params.get("realm"):
            realm = bearer.params["realm"]
            service = bearer.params.get("service")
            scope = bearer.params.get("scope") or default_scope
            with self._lock:
                state.auth_scheme, state.realm, state.service = "bearer", realm, service
            token = self._token(ref, state, realm, service, scope)
            return f"Bearer {token.value}", token.with_credentials
        if basic is not None:
            with self._lock:
                state.auth_scheme = "basic"
            creds = self._creds_for(ref, state)
            header = creds.basic_header if creds else None
            if header is None:
                raise RegistryAuthError(
                    f"registry {ref.registry} requires authentication (Basic) and no credentials "
                    f"were sent: none configured and none found in {self._config_path()}; "
                    "configure registry credentials or log in with 'docker login "
                    f"{ref.registry}'",
                    reference=ref.original,
                )
            return header, True
        offered = ", ".join(sorted(by_scheme)) or "no WWW-Authenticate challenge"
        raise RegistryAuthError(
            f"registry {ref.registry} answered {response.method} {response.url} with 401 and "
            f"offers an authentication this client cannot follow ({offered})",
            reference=ref.original,
        )

    def _auth_error(
        self,
        ref: ImageReference,
        state: _RegistryState,
        response: _Response,
        *,
        sent_credentials: bool,
    ) -> RegistryAuthError:
        code = _error_codes(response.body)
        said = f" ({code})" if code else ""
        try:
            creds = self._creds_for(ref, state)
        except RegistryAuthError:
            creds = None
        if sent_credentials and creds is not None:
            sent = (
                f"credentials from {creds.source} were sent and refused; check the user name, "
                "the password and the user's access to the repository"
            )
        elif creds is not None:
            sent = (
                f"no credentials were sent: the registry refused without asking for them "
                f"(credentials from {creds.source} are available)"
            )
        else:
            sent = (
                f"no credentials were sent (none configured, none found in "
                f"{self._config_path()}); configure registry credentials or log in with "
                f"'docker login {ref.registry}'"
            )
        return RegistryAuthError(
            f"registry {ref.registry} refused access to {ref.repository}: {response.method} "
            f"{response.url} answered {response.status} {response.reason}{said}; {sent}",
            reference=ref.original,
        )

    def _token(
        self,
        ref: ImageReference,
        state: _RegistryState,
        realm: str,
        service: str | None,
        scope: str,
    ) -> _Token:
        """A bearer token for (registry, scope): cached, else fetched once (other threads wait)."""
        key = (ref.api_host, scope)
        with self._key_lock(("token", *key)):
            with self._lock:
                token = self._tokens.get(key)
            if token is not None and token.expires_at > time.monotonic():
                return token
            token = self._fetch_token(ref, state, realm, service, scope)
            with self._lock:
                self._tokens[key] = token
            return token

    def _forget_token(self, registry: str, authorization: str | None) -> None:
        """Drop a cached token the registry refused; only that one (other threads' stay)."""
        if authorization is None or not authorization.startswith("Bearer "):
            return
        value = authorization[len("Bearer ") :]
        with self._lock:
            for key in [
                k for k, t in self._tokens.items() if k[0] == registry and t.value == value
            ]:
                del self._tokens[key]

    def _fetch_token(
        self,
        ref: ImageReference,
        state: _RegistryState,
        realm: str,
        service: str | None,
        scope: str,
    ) -> _Token:
        parts = urllib.parse.urlsplit(realm)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise RegistryAuthError(
                f"registry {ref.registry} names a token realm that is not an http(s) URL: "
                f"{realm!r}",
                reference=ref.original,
            )
        if parts.scheme == "http" and not (_is_loopback_host(host) or self._allow_http):
            raise RegistryAuthError(
                f"registry {ref.registry} wants credentials sent to a plain-HTTP token service "
                f"({realm}); refusing (allow HTTP registries to permit it)",
                reference=ref.original,
            )
        creds = self._creds_for(ref, state)
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        query.extend(("scope", s) for s in scope.split())
        if creds is not None and creds.identity_token:
            form = [*query, ("grant_type", "refresh_token"), ("client_id", "cosign-signer")]
            form.append(("refresh_token", creds.identity_token))
            body = urllib.parse.urlencode(form).encode()
            response = self._send(
                ref,
                "POST",
                realm,
                {"Content-Type": "application/x-www-form-urlencoded"},
                None,
                read_limit=_MAX_SMALL_BODY,
                data=body,
            )
            with_creds = True
        else:
            separator = "&" if parts.query else "?"
            url = realm + (separator + urllib.parse.urlencode(query) if query else "")
            authorization = creds.basic_header if creds is not None else None
            response = self._send(ref, "GET", url, {}, authorization, read_limit=_MAX_SMALL_BODY)
            with_creds = authorization is not None
        if response.status in (_STATUS_UNAUTHORIZED, _STATUS_FORBIDDEN):
            if with_creds and creds is not None:
                sent = f"credentials from {creds.source} were sent and refused"
            else:
                sent = (
                    "no credentials were sent (none configured, none found in "
                    f"{self._config_path()}); configure registry credentials or log in with "
                    f"'docker login {ref.registry}'"
                )
            raise RegistryAuthError(
                f"token service of registry {ref.registry} refused a token for {scope}: "
                f"{response.method} {_strip_query(response.url)} answered {response.status} "
                f"{response.reason}; {sent}",
                reference=ref.original,
            )
        if response.status // 100 != 2:  # noqa: PLR2004 - any 2xx
            raise self._status_error(ref, response, what_request="a token request")
        try:
            answer = json.loads(response.body)
            value = answer.get("token") or answer.get("access_token")
            expires_in = answer.get("expires_in")
        except (ValueError, AttributeError):
            value, expires_in = None, None
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(
                f"token service of registry {ref.registry} ({_strip_query(realm)}) answered "
                "without a token",
                reference=ref.original,
            )
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) else 0.0
        lifetime = max(lifetime, float(_TOKEN_MIN_LIFETIME))
        return _Token(
            value=value,
            expires_at=time.monotonic() + lifetime - _TOKEN_MARGIN,
            with_credentials=with_creds,
        )

    # ---- credentials ----------------------------------------------------------------------------

    def _configured_creds(self) -> _Creds | None:
        creds = self._credentials
        if creds is not None and creds.username and creds.password:
            return _Creds(
                source="the configuration", username=creds.username, password=creds.password
            )
        return None

    def _creds_for(self, ref: ImageReference, state: _RegistryState) -> _Creds | None:
        """The credentials for ``ref``'s registry: configured, else docker config (cached)."""
        with self._lock:
            if state.creds_resolved:
                return state.creds
        with self._key_lock(("creds", ref.api_host)):
            with self._lock:
                if state.creds_resolved:
                    return state.creds
            creds = self._configured_creds() or self._docker_creds(ref)
            with self._lock:
                state.creds, state.creds_resolved = creds, True
            return creds

    def _config_path(self) -> Path:
        return self._config_dir / "config.json"

    def _read_docker_config(self, ref: ImageReference) -> dict[str, Any]:
        with self._lock:
            if self._docker_config is not None:
                return self._docker_config
        path = self._config_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
            raise RegistryAuthError(
                f"cannot read registry credentials from docker config {path}: {reason}",
                reference=ref.original,
            ) from None
        if not isinstance(data, dict):
            raise RegistryAuthError(
                f"cannot read registry credentials from docker config {path}: not a JSON object",
                reference=ref.original,
            )
        with self._lock:
            self._docker_config = data
        return data

    def _docker_creds(self, ref: ImageReference) -> _Creds | None:
        """Credentials from the docker config, looked up as docker's CLI (and so cosign) does."""
        config = self._read_docker_config(ref)
        key = _DOCKER_HUB_AUTH_KEY if ref.registry in _DOCKER_HUB_HOSTS else ref.registry
        helpers = config.get("credHelpers")
        helper = helpers.get(key) if isinstance(helpers, dict) else None
        if not helper and isinstance(config.get("credsStore"), str):
            helper = config["credsStore"]
        if isinstance(helper, str) and helper:
            return self._helper_creds(ref, helper, key)
        auths = config.get("auths")
        if not isinstance(auths, dict):
            return None
        entry = auths.get(key)
        if entry is None:
            wanted = {key, ref.registry} | (
                _DOCKER_HUB_HOSTS if key == _DOCKER_HUB_AUTH_KEY else set()
            )
            entry = next((v for k, v in auths.items() if _hostname_of(k) in wanted), None)
        if not isinstance(entry, dict):
            return None
        source = f"docker config {self._config_path()}"
        username = str(entry.get("username") or "")
        password = str(entry.get("password") or "")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if ":" not in decoded:
                raise RegistryAuthError(
                    f"the 'auth' entry for {key} in {self._config_path()} is not base64 of "
                    "'user:password'; log in again with 'docker login'",
                    reference=ref.original,
                )
            username, password = decoded.split(":", 1)
        identity = str(entry.get("identitytoken") or "")
        if not (username or password or identity):
            return None
        return _Creds(source=source, username=username, password=password, identity_token=identity)

    def _helper_creds(self, ref: ImageReference, helper: str, server: str) -> _Creds | None:
        """Run ``docker-credential-<helper> get`` with ``server`` on stdin (the helper protocol)."""
        name = f"docker-credential-{helper}"
        if not _HELPER_NAME_RE.fullmatch(helper):
            raise RegistryAuthError(
                f"invalid credential helper name {helper!r} in {self._config_path()}",
                reference=ref.original,
            )
        executable = shutil.which(name, path=self._environ.get("PATH", os.defpath))
        if executable is None:
            raise RegistryAuthError(
                f"credential helper {name} (named in {self._config_path()}) is not on PATH; "
                "install it or remove it from the docker config",
                reference=ref.original,
            )
        source = f"credential helper {name}"
        _log.debug("asking %s for credentials for %s", name, server)
        try:
            process = _process.run(
                [executable, "get"], env=self._environ, timeout=self._timeout, input=server
            )
        except CosignNotFoundError as exc:
            raise RegistryAuthError(
                f"cannot run credential helper {executable}: {exc.reason}",
                reference=ref.original,
            ) from None
        except _process.ProcessTimeout:
            raise RegistryAuthError(
                f"credential helper {name} did not answer within {self._timeout:g}s",
                reference=ref.original,
            ) from None
        stdout = process.stdout
        if process.returncode != 0:
            message = stdout.strip()
            if message == _HELPER_NOT_FOUND:
                _log.debug("%s has no credentials for %s", name, server)
                return None
            first = message.splitlines()[0][:200] if message else "(no message)"
            raise RegistryAuthError(
                f"credential helper {name} failed for {server} (exit code "
                f"{process.returncode}): {first}",
                reference=ref.original,
            )
        try:
            answer = json.loads(stdout)
            username = answer.get("Username") or ""
            secret = answer.get("Secret") or ""
        except (ValueError, AttributeError):
            raise RegistryAuthError(
                f"credential helper {name} answered something that is not its JSON protocol",
                reference=ref.original,
            ) from None
        if not isinstance(username, str) or not isinstance(secret, str):
            raise RegistryAuthError(
                f"credential helper {name} answered non-string Username/Secret",
                reference=ref.original,
            )
        if not (username or secret):
            return None
        if username == "<token>":  # docker's marker: Secret is an identity (refresh) token
            return _Creds(source=source, identity_token=secret)
        return _Creds(source=source, username=username, password=secret)

    # ---- transport ------------------------------------------------------------------------------

    def _state(self, ref: ImageReference) -> _RegistryState:
        host = ref.api_host
        with self._lock:
            state = self._states.get(host)
            if state is None:
                scheme = "http" if (ref.is_loopback or self._allow_http) else "https"
                state = self._states[host] = _RegistryState(scheme=scheme)
            return state

    def _key_lock(self, key: tuple[str, ...]) -> threading.Lock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def _opener(self, host: str, *, https: bool) -> urllib.request.OpenerDirector:
        use_proxy = bool(self._proxies) and not (
            _is_loopback_host(host) or _bypasses_proxy(host, self._no_proxy())
        )
        tls = ("insecure" if self._allow_insecure else "verify") if https else "none"
        key = (use_proxy, tls)
        with self._lock:
            opener = self._openers.get(key)
        if opener is None:
            opener = self._build_opener(use_proxy=use_proxy, tls=tls)
            with self._lock:
                opener = self._openers.setdefault(key, opener)
        return opener

    def _no_proxy(self) -> str:
        return self._environ.get("no_proxy") or self._environ.get("NO_PROXY") or ""

    def _build_opener(self, *, use_proxy: bool, tls: str) -> urllib.request.OpenerDirector:
        # Only the handlers needed: no file:, ftp: or data: URLs from a registry's answers. A
        # plain-HTTP opener has no HTTPS handler: loading the CA store costs ~50 ms, and loopback
        # registries never need it.
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler(dict(self._proxies) if use_proxy else {}),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            _HeadKeepingRedirects(),
            urllib.request.HTTPErrorProcessor(),
        ]
        if tls != "none":
            handlers.append(urllib.request.HTTPSHandler(context=_tls_context(tls == "insecure")))
        opener = urllib.request.OpenerDirector()
        for handler in handlers:
            opener.add_handler(handler)
        return opener

    def _send(
        self,
        ref: ImageReference,
        method: str,
        url: str,
        headers: Mapping[str, str],
        authorization: str | None,
        *,
        read_limit: int,
        data: bytes | None = None,
    ) -> _Response:
        """One HTTP exchange; any status is returned, transport failures raise (transient)."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        if https and self._allow_insecure:
            self._warn_insecure(parts.netloc)
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("User-Agent", _USER_AGENT)
        for name, value in headers.items():
            request.add_header(name, value)
        if authorization is not None:
            # Unredirected: never follows a redirect to another host (blob stores, CDNs).
            request.add_unredirected_header("Authorization", authorization)
        started = time.monotonic()
        try:
            opener = self._opener(host, https=https)
            try:
                with opener.open(request, timeout=self._timeout) as answer:
                    body = answer.read(read_limit + 1) if method != "HEAD" else b""
                    status, reason, answer_headers = answer.status, answer.reason, answer.headers
            except urllib.error.HTTPError as exc:
                with exc:
                    body = exc.read(_MAX_SMALL_BODY) if method != "HEAD" else b""
                status, reason, answer_headers = exc.code, str(exc.reason), exc.headers
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            _log.debug("%s %s -> %s", method, _strip_query(url), type(exc).__name__)
            raise self._transport_error(ref, method, url, exc) from None
        _log.debug(
            "%s %s -> %d (%.0f ms)",
            method,
            _strip_query(url),
            status,
            (time.monotonic() - started) * 1000,
        )
        if len(body) > read_limit:
            raise CosignError(
                f"registry {ref.registry} answered {method} {_strip_query(url)} with more than "
                f"{read_limit} bytes; not a manifest",
                reference=ref.original,
            )
        return _Response(
            method=method,
            url=_strip_query(url),
            status=status,
            reason=reason,
            headers=answer_headers,
            body=body,
        )

    def _transport_error(
        self, ref: ImageReference, method: str, url: str, exc: BaseException
    ) -> CosignError:
        reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        where = f"{method} {_strip_query(url)}"
        if isinstance(reason, ssl.SSLCertVerificationError):
            return RegistryUnavailableError(
                f"TLS verification failed for registry {ref.registry} ({where}): "
                f"{reason.verify_message or reason}; install its CA certificate, or allow "
                "insecure registries to skip verification",
                reference=ref.original,
                transient=False,
            )
        text = _describe_transport(reason)
        return RegistryUnavailableError(
            f"registry {ref.registry} is unavailable: {where}: {text}", reference=ref.original
        )

    def _warn_insecure(self, netloc: str) -> None:
        with self._lock:
            if netloc in self._warned_insecure:
                return
            self._warned_insecure.add(netloc)
        _log.warning(
            "TLS certificate verification is disabled for %s (allow_insecure): anyone on the "
            "network path can impersonate it",
            netloc,
        )


# ---- small pure helpers -------------------------------------------------------------------------


_TLS_LOCK = threading.Lock()
_TLS_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def _tls_context(insecure: bool) -> ssl.SSLContext:
    """The verifying (or, for ``allow_insecure``, non-verifying) TLS context, built once."""
    with _TLS_LOCK:
        context = _TLS_CONTEXTS.get(insecure)
        if context is None:
            context = ssl.create_default_context()
            if insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            _TLS_CONTEXTS[insecure] = context
        return context


def _header_digest(headers: Message) -> str | None:
    value = (headers.get("Docker-Content-Digest") or "").strip()
    return value if _DIGEST_RE.fullmatch(value) else None


def _error_codes(body: bytes) -> str:
    """``CODE: message`` of a distribution error body (``{"errors": [...]}``), or ``""``."""
    if not body:
        return ""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    parts = []
    for item in errors:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            message = item.get("message")
            parts.append(f"{item['code']}: {message}" if isinstance(message, str) else item["code"])
    return "; ".join(parts)


def _not_found_message(ref: ImageReference, code: str) -> str:
    where = f"{ref.registry}/{ref.repository}"
    if code.startswith("NAME_UNKNOWN"):
        what = f"repository {where} does not exist"
        hint = "check the repository name and registry host"
    elif ref.digest is not None:
        what = f"digest {ref.digest} not found in {where}"
        hint = "check the digest and that the image was pushed to this repository"
    else:
        what = f"tag {ref.tag!r} not found in {where}"
        hint = "check the tag and that the image was pushed"
    said = f" (registry says {code})" if code else ""
    return f"image not found: {ref.original}: {what}{said}; {hint}"


_TRANSPORT_TEXTS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused (is the registry running on that port?)"),
    (ConnectionResetError, "connection reset by peer"),
    (TimeoutError, "timed out"),
    (http.client.RemoteDisconnected, "the server closed the connection without answering"),
)


def _describe_transport(reason: object) -> str:
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host name ({reason.strerror or reason})"
    for kind, text in _TRANSPORT_TEXTS:
        if isinstance(reason, kind):
            return text
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return f"{type(reason).__name__}: {reason}"


def _bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated hosts/domains, ``*`` for all) exempts ``host``."""
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        entry = entry.lstrip(".")
        if ":" in entry and not entry.startswith("["):
            entry = entry.rsplit(":", 1)[0]
        entry = entry.strip("[]")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def _strip_query(url: str) -> str:
    """The URL without query or fragment (what messages and logs show)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _hostname_of(key: str) -> str:
    """docker's ConvertToHostname: drop ``http(s)://`` and everything from the first ``/``."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    return key.split("/", 1)[0]


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in {"localhost", "::1"} or host.startswith("127.")


def _proxies_from(environ: Mapping[str, str]) -> dict[str, str]:
    """``{scheme: proxy URL}`` from ``*_proxy`` variables (lower case wins, as in urllib)."""
    proxies: dict[str, str] = {}
    for name in sorted(environ, key=lambda n: n.islower()):  # upper case first, lower overrides
        value = environ[name]
        if value and name.lower().endswith("_proxy") and name.lower() != "no_proxy":
            proxies[name.lower()[: -len("_proxy")]] = value
    return proxies
