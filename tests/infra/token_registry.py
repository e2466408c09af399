"""A real distribution registry with ``auth: token``, and the token service it trusts.

The registry (Debian's ``docker-registry``, distribution 2.8) answers every unauthenticated request
with ``401`` and ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``. The realm is
:class:`TokenService`: a small ``http.server`` on 127.0.0.1 in a thread of the test process that
checks HTTP Basic credentials (or an OAuth2 refresh token, as docker's ``identitytoken``) and issues
JWTs the registry verifies:

- signed ES256 by a P-256 key whose self-signed certificate is the registry's ``rootcertbundle``;
- header ``x5c`` = that certificate (distribution 2.8 verifies the chain against the bundle, then
  checks the signature with the leaf's key; 3.x does the same), plus ``kid`` (libtrust format, used
  by 2.8 only when ``x5c`` is absent);
- claims ``iss`` (must equal the registry's ``issuer``), ``aud`` (its ``service``), ``exp``/``nbf``
  /``iat`` and ``access``: ``[{"type": "repository", "name": REPO, "actions": [...]}]``.

Anonymous requests get a token with no access (as public token services do), so the registry
refuses them; wrong credentials get ``401`` from the token service itself. Every request is
recorded (:attr:`TokenService.requests`) so tests can prove the Bearer flow ran and was cached.

Images are pushed in an "open window" (:meth:`TokenRegistry.open_for_push`): the registry is
restarted without auth on the same storage and port, the shared ``push_image`` helpers (HTTP Basic
only) push, then it comes back with token auth.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.infra.registry import RegistryServer

ISSUER = "cosign-signer-test-issuer"
SERVICE = "cosign-signer-test-registry"
TOKEN_LIFETIME = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """docker/libtrust's key ID: base32 of SHA-256(DER SPKI)[:30 bytes], in 4-char groups."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TokenRequest:
    """One request the token service received (no secrets: the user name only)."""

    method: str
    service: str | None
    scopes: tuple[str, ...]
    user: str | None
    """The authenticated user, ``None`` when anonymous or refused."""
    grant: str
    """``basic``, ``refresh_token`` or ``anonymous``."""
    status: int


@dataclass
class TokenService:
    """The token realm: Basic credentials or refresh tokens in, signed JWTs out.

    ``users`` maps user names to passwords; ``refresh_tokens`` maps refresh tokens to user names.
    ``token_field`` chooses the answer's field: ``"token"``, ``"access_token"`` or ``"both"``.
    """

    users: dict[str, str] = field(repr=False)
    refresh_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    token_field: str = "token"
    issuer: str = ISSUER
    service: str = SERVICE

    def __post_init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cosign-signer test tokens")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._issued: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- what tests look at ---------------------------------------------------------------------

    @property
    def realm(self) -> str:
        if self._server is None:
            raise RuntimeError("the token service has not been started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def issued_tokens(self) -> list[str]:
        """Every token handed out (so tests can check none leaks into logs or messages)."""
        with self._lock:
            return list(self._issued)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    # ---- tokens ---------------------------------------------------------------------------------

    def issue(self, subject: str, scopes: tuple[str, ...]) -> str:
        """A JWT granting ``subject`` every action each scope asks for (``type:name:a,b``)."""
        access: list[dict[str, object]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        return self._sign(subject, access)

    def _sign(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "kid": libtrust_key_id(self._key.public_key()),
            "x5c": [
                base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()
            ],
        }
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JOSE wants raw r||s, 32 bytes each, not DER
        token = signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        with self._lock:
            self._issued.append(token)
        return token

    # ---- HTTP -----------------------------------------------------------------------------------

    def _authenticate(self, authorization: str | None) -> tuple[str | None, bool]:
        """``(user, ok)``: ok is False when credentials were given and are wrong."""
        if not authorization:
            return None, True
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, False
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None, False
        return user, True

    def _answer(
        self, method: str, params: dict[str, list[str]], authorization: str | None
    ) -> tuple[int, dict[str, object]]:
        service = (params.get("service") or [""])[0] or None
        scopes = tuple(s for value in params.get("scope", []) for s in value.split())
        if method == "POST":
            grant = "refresh_token"
            refresh = (params.get("refresh_token") or [""])[0]
            user = self.refresh_tokens.get(refresh) if refresh else None
            ok = user is not None and (params.get("grant_type") or [""])[0] == "refresh_token"
        else:
            user, ok = self._authenticate(authorization)
            grant = "basic" if authorization else "anonymous"
        body: dict[str, object]
        if service != self.service:
            status, body = 400, {"error": "invalid_request", "error_description": "unknown service"}
        elif not ok:
            status, body = 401, {"error": "invalid_grant", "error_description": "bad credentials"}
            user = None
        else:
            token = self.issue(user, scopes) if user else self._sign("", [])
            body = {
                "expires_in": TOKEN_LIFETIME,
                "issued_at": datetime.now(timezone.utc).isoformat(),
            }
            if self.token_field in ("token", "both"):
                body["token"] = token
            if self.token_field in ("access_token", "both"):
                body["access_token"] = token
            status = 200
        with self._lock:
            self._requests.append(TokenRequest(method, service, scopes, user, grant, status))
        return status, body

    def start(self) -> TokenService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, params: dict[str, list[str]]) -> None:
                if urllib.parse.urlsplit(self.path).path != "/token":
                    self.send_error(404)
                    return
                status, body = service._answer(
                    self.command, params, self.headers.get("Authorization")
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="token service"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode()
                params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                params.update(urllib.parse.parse_qs(form))
                self._reply(params)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="token-service", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@dataclass(frozen=True)
class TokenAuth:
    """The registry's ``auth: token`` section (a ``RegistryAuth`` for :class:`RegistryServer`)."""

    service: TokenService
    user: str
    password: str = field(repr=False)

    @property
    def credentials(self) -> tuple[str, str]:
        return (self.user, self.password)

    def auth_config(self, workdir: Path) -> dict[str, object]:
        bundle = workdir / "token-root.pem"
        bundle.write_bytes(self.service.certificate_pem())
        return {
            "token": {
                "realm": self.service.realm,
                "service": self.service.service,
                "issuer": self.service.issuer,
                "rootcertbundle": str(bundle),
            }
        }


class TokenRegistry:
    """A token service plus a ``docker-registry`` that trusts it, on 127.0.0.1 (context manager).

    ``host``/``url`` address the registry; ``user``/``password`` are valid at the token service;
    ``tokens`` is the :class:`TokenService` (its ``requests`` record the Bearer flow).
    """

    def __init__(self, binary: Path, *, token_field: str = "token") -> None:  # noqa: S107
        self.user = "tokenuser"
        self.password = secrets.token_urlsafe(18)
        self.refresh_token = secrets.token_urlsafe(24)
        self.tokens = TokenService(
            users={self.user: self.password},
            refresh_tokens={self.refresh_token: self.user},
            token_field=token_field,
        )
        self._auth: TokenAuth | None = None
        self.server: RegistryServer | None = None
        self._binary = binary

    @property
    def host(self) -> str:
        return self._server().host

    @property
    def url(self) -> str:
        return self._server().url

    def _server(self) -> RegistryServer:
        if self.server is None:
            raise RuntimeError("the token registry has not been started")
        return self.server

    @contextlib.contextmanager
    def open_for_push(self) -> Iterator[str]:
        """Restart the registry WITHOUT auth (same storage, same port) for the block; yield its URL.

        The shared push helpers speak HTTP Basic only; this lets them push, then token auth is back.
        """
        server = self._server()
        server.stop()
        server.auth = None
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
            server.auth = self._auth
            server.start()

    def __enter__(self) -> TokenRegistry:
        self.tokens.start()
        try:
            self._auth = TokenAuth(self.tokens, self.user, self.password)
            self.server = RegistryServer(self._binary, auth=self._auth)
            self.server.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.tokens.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
