"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, in front of a real registry on loopback.

cosign and the library's pre-flight are pointed at ``proxy.host`` instead of the registry's: the
proxy forwards every request byte for byte (headers included, so the registry's htpasswd auth
still applies) and every response back, except the requests a fault rule claims. Rules:

- ``reset(count=K)``: read the request, then close the connection with a TCP RST
  (the client sees ``connection reset by peer``);
- ``respond(503 | 429 | 401 | ..., count=K)``: answer that status with a registry-style JSON error
  body instead of forwarding;
- ``stall(seconds, count=K)``: hold the request ``seconds`` before forwarding it (released at once
  when the proxy stops).

Each rule fires for the first ``count`` requests it matches (``methods``: only these HTTP
methods, e.g. ``WRITES`` so the pre-flight's ``HEAD`` passes and cosign's push fails;
``path_contains``; ``path``: exactly this path, e.g. ``PING`` = ``/v2/``, which cosign asks first
and the pre-flight never), or, with ``count=None``, for as long as ``active()`` returns true (e.g. "during
the first two cosign runs", counted by a spy script). Rules are tried in the order they were added.

The proxy counts connections and requests (``requests`` lists ``(method, path, outcome)``). It binds
127.0.0.1 only, forwards to a loopback upstream only, and stops (closing every socket, releasing
every stall) on ``close()`` / leaving the ``with`` block.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, Literal

WRITES = frozenset({"PUT", "POST", "PATCH"})
"""The methods that change a registry: cosign's push, never the pre-flight."""
PING = "/v2/"
"""The API version check every registry client (cosign) starts with; the pre-flight skips it."""

_MAX_LINE = 65536
_MAX_HEADERS = 200
_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# Registry error codes (distribution's errcode) that go with each status.
_CODES = {
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NAME_UNKNOWN",
    429: "TOOMANYREQUESTS",
    503: "UNAVAILABLE",
}

Action = Literal["reset", "status", "stall"]


@dataclass
class FaultRule:
    """One fault: what to do, to which requests, how many times."""

    action: Action
    count: int | None = 1
    methods: frozenset[str] | None = None
    path_contains: str | None = None
    path: str | None = None
    status: int = 503
    message: str = "fault injected by the test proxy"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    seconds: float = 0.0
    active: Callable[[], bool] | None = None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        if self.path is not None and self.path != path:
            return False
        if self.count is not None:
            return self.fired < self.count
        return self.active is None or self.active()


class _Closed(Exception):  # noqa: N818 - internal control flow: the peer went away
    """The peer closed the connection (cleanly, between requests)."""


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    raw: bytes
    close: bool


class FaultProxy:
    """A threaded proxy on ``127.0.0.1:<free port>`` that forwards to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        if not upstream_host.startswith("127.") and upstream_host != "localhost":
            raise ValueError("the fault proxy only forwards to a loopback upstream")
        self._upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rules: list[FaultRule] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self.requests: list[tuple[str, str, str]] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    # ---- addresses -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of references that go through the proxy."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def route(self, reference: str) -> str:
        """``reference`` (``HOST:PORT/repo…``) with its registry replaced by the proxy's."""
        return f"{self.host}/{reference.split('/', 1)[1]}"

    # ---- rules -----------------------------------------------------------------------------------

    def reset(
        self,
        *,
        count: int | None = 1,
        methods: Iterable[str] | None = None,
        path_contains: str | None = None,
        path: str | None = None,
        active: Callable[[], bool] | None = None,
    ) -> FaultRule:
        """Reset (TCP RST) the connection of the first ``count`` matching requests."""
        rule = FaultRule("reset", count, _methods(methods), path_contains, path, active=active)
        return self._add(rule)

    def respond(
        self,
        status: int,
        *,
        count: int | None = 1,
        methods: Iterable[str] | None = None,
        path_contains: str | None = None,
        path: str | None = None,
        message: str = "fault injected by the test proxy",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        active: Callable[[], bool] | None = None,
    ) -> FaultRule:
        """Answer ``status`` instead of forwarding: a registry-style JSON error body whose message is
        ``message``, or ``body`` as given (``text/html``, as a load balancer's error page)."""
        extra = dict(headers or {})
        if status == 401 and "WWW-Authenticate" not in extra:
            extra["WWW-Authenticate"] = 'Basic realm="test"'
        if status == 429 and "Retry-After" not in extra:
            extra["Retry-After"] = "0"
        rule = FaultRule(
            "status",
            count,
            _methods(methods),
            path_contains,
            path,
            status=status,
            message=message,
            headers=extra,
            body=body,
            active=active,
        )
        return self._add(rule)

    def stall(
        self,
        seconds: float,
        *,
        count: int | None = 1,
        methods: Iterable[str] | None = None,
        path_contains: str | None = None,
        path: str | None = None,
        active: Callable[[], bool] | None = None,
    ) -> FaultRule:
        """Hold the first ``count`` matching requests ``seconds`` before forwarding them."""
        rule = FaultRule(
            "stall", count, _methods(methods), path_contains, path, seconds=seconds, active=active
        )
        return self._add(rule)

    def clear(self) -> None:
        """Drop every rule: from now on, forward everything."""
        with self._lock:
            self._rules.clear()

    def _add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _claim(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
        return None

    # ---- counters --------------------------------------------------------------------------------

    def count(self, method: str | None = None, outcome: str | None = None) -> int:
        """How many requests were seen (of ``method``; with ``outcome``: ``forwarded``, ``reset``,
        ``status 503``, ``stall``)."""
        with self._lock:
            return sum(
                1
                for m, _, o in self.requests
                if (method is None or m == method) and (outcome is None or o == outcome)
            )

    # ---- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting, release stalls, close every connection, join the threads."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._acceptor.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.host} -> {self._upstream[0]}:{self._upstream[1]})"

    # ---- serving ---------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, address = self._listener.accept()
            except OSError:
                return
            if not str(address[0]).startswith("127."):
                client.close()  # loopback only
                continue
            with self._lock:
                self.connections += 1
                self._sockets.add(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _forget(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _record(self, request: _Request, outcome: str) -> None:
        with self._lock:
            self.requests.append((request.method, request.path, outcome))

    def _serve(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = client.makefile("rb")
        upstream = _Upstream(self, self._upstream)
        try:
            if not _looks_like_http(reader):
                # e.g. a TLS ClientHello (cosign tries https first when plain http fails): answer
                # as a plain-HTTP Go server does, instead of waiting for a line that never comes.
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            while not self._stop.is_set() and self._answer(client, reader, upstream):
                pass
        except (OSError, ValueError, _Closed):
            return
        finally:
            upstream.close()
            with contextlib.suppress(OSError):
                reader.close()
            self._forget(client)

    def _answer(self, client: socket.socket, reader: BinaryIO, upstream: _Upstream) -> bool:
        """Serve one request of ``client``; return whether its connection stays open."""
        request = _read_request(reader)
        rule = self._claim(request.method, request.path)
        if rule is not None and rule.action == "reset":
            self._record(request, "reset")
            reader.close()  # else close() waits for the reader and no RST is sent
            _reset(client)
            return False
        if rule is not None and rule.action == "status":
            self._record(request, f"status {rule.status}")
            client.sendall(_error_response(rule, request.method))
            return not request.close
        self._record(request, "forwarded" if rule is None else "stall")
        if rule is not None and self._stop.wait(rule.seconds):
            return False  # the proxy stops: drop the stalled request
        client.sendall(upstream.exchange(request))
        return not request.close


class _Upstream:
    """The connection to the registry that one client connection's requests go through."""

    def __init__(self, proxy: FaultProxy, address: tuple[str, int]) -> None:
        self._proxy = proxy
        self._address = address
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    def exchange(self, request: _Request) -> bytes:
        """Send ``request`` and return the registry's whole response (raw)."""
        if self._sock is None or self._reader is None:
            sock = socket.create_connection(self._address, timeout=60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._reader = self._proxy._track(sock), sock.makefile("rb")
        self._sock.sendall(request.raw)
        response, keep_alive = _read_response(self._reader, request.method)
        if not keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(OSError):
                self._reader.close()
        self._proxy._forget(self._sock)
        self._sock, self._reader = None, None


# ---- HTTP/1.1 framing ----------------------------------------------------------------------------


def _methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.upper() for m in methods)


def _looks_like_http(reader: BinaryIO) -> bool:
    """Whether the connection's first byte can start an HTTP request line (a method's letter)."""
    peek = getattr(reader, "peek", None)
    first = peek(1)[:1] if peek is not None else b"A"
    return not first or first.isalpha()


def _readline(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ValueError("header line too long")
    return line


def _read_head(reader: BinaryIO) -> tuple[bytes, list[bytes]]:
    """The start line and header lines (raw, with CRLF); ``_Closed`` on EOF before a request."""
    first = _readline(reader)
    while first in (b"\r\n", b"\n"):  # tolerate stray CRLF between requests (RFC 9112 2.2)
        first = _readline(reader)
    if not first:
        raise _Closed
    lines = []
    while True:
        line = _readline(reader)
        if not line:
            raise _Closed
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            break
        if len(lines) > _MAX_HEADERS:
            raise ValueError("too many headers")
    return first, lines


def _headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return headers


def _read_exact(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise _Closed
    return data


def _read_chunked(reader: BinaryIO) -> bytes:
    """A chunked body, raw (sizes, data and trailers), so it can be relayed unchanged."""
    out = bytearray()
    while True:
        line = _readline(reader)
        if not line:
            raise _Closed
        out += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:
                trailer = _readline(reader)
                out += trailer
                if trailer in (b"\r\n", b"\n", b""):
                    return bytes(out)
        out += _read_exact(reader, size + 2)


def _read_body(reader: BinaryIO, headers: dict[str, str]) -> bytes | None:
    """The framed body, or ``None`` when it is delimited by the connection's close."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(reader)
    if "content-length" in headers:
        return _read_exact(reader, int(headers["content-length"]))
    return None


def _read_request(reader: BinaryIO) -> _Request:
    first, lines = _read_head(reader)
    parts = first.decode("latin-1").split()
    if len(parts) != 3:  # METHOD TARGET VERSION
        raise ValueError(f"bad request line {first!r}")
    method, target, version = parts
    headers = _headers(lines)
    body = _read_body(reader, headers) or b""
    close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
    return _Request(method.upper(), target, first + b"".join(lines) + body, close)


def _read_response(reader: BinaryIO, method: str) -> tuple[bytes, bool]:
    """The upstream's whole response, raw, and whether its connection can be reused."""
    first, lines = _read_head(reader)
    parts = first.decode("latin-1").split(maxsplit=2)
    status = int(parts[1])
    headers = _headers(lines)
    keep_alive = headers.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body: bytes | None = b""
    else:
        body = _read_body(reader, headers)
    if body is None:  # delimited by close: read it all, and the connection is done
        body, keep_alive = reader.read(), False
    return first + b"".join(lines) + body, keep_alive


def _error_response(rule: FaultRule, method: str) -> bytes:
    if rule.body is not None:
        body, content_type = rule.body, "text/html"
    else:
        code = _CODES.get(rule.status, "UNKNOWN")
        errors = [{"code": code, "message": rule.message, "detail": None}]
        body, content_type = (
            json.dumps({"errors": errors}).encode(),
            "application/json; charset=utf-8",
        )
    reason = _REASONS.get(rule.status, "Error")
    headers = {
        "Content-Type": content_type,
        "Docker-Distribution-Api-Version": "registry/2.0",
        "Content-Length": str(len(body)),
        **rule.headers,
    }
    head = f"HTTP/1.1 {rule.status} {reason}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    return (head + "\r\n").encode("latin-1") + (b"" if method == "HEAD" else body)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, the peer reads ``connection reset``."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
