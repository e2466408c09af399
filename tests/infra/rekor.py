"""A real Rekor transparency log on 127.0.0.1, v1 and v2, for tests.

Binaries come from ``scripts/provision-rekor.sh`` (``.tools/rekor/``): Rekor v2 is rekor-tiles'
POSIX server (tiles and checkpoint in a directory, no database); Rekor v1 is ``rekor-server`` on
Trillian (``trillian_log_server`` + ``trillian_log_signer``) on a private ``mariadbd``. Standard
library only; ``openssl`` makes the v2 log key.

What cosign needs to use these logs (every line below was SEEN with Debian's cosign 2.5.0
(2.5.0-2+b5) and 3.1.1 (3.1.1-2), rekor-tiles 2.3.0 and rekor 1.5.3 from Debian sid, Trillian
1.7.3; the test file ``tests/test_rekor_infra.py`` re-proves each cell):

cosign 2 -> Rekor v1 (cosign 2 -> Rekor v2 is not a cell: ``cosign sign --rekor-url V2_URL`` fails
    with rc 1 and ``signing [REF]: signing digest: [POST /api/v1/log/entries][404]
    createLogEntry default {"code":5,"message":"Not Found"}``)
    sign:   ``cosign sign --key KEY --rekor-url URL --tlog-upload=true -y IMAGE@DIGEST``
            (``--tlog-upload=true`` is the default). No log key is needed to sign.
    index:  stderr has the line ``tlog entry created with index: N`` (0 for a fresh log).
    verify: ``SIGSTORE_REKOR_PUBLIC_KEY=PUB_PEM cosign verify --key COSIGN_PUB IMAGE@DIGEST``
            (with or without ``--rekor-url URL``: it checks the SET offline, "verified
            offline"). Without the variable cosign 2 goes to the public TUF mirror and fails:
            ``getting Rekor public keys: updating local metadata and targets: error updating to
            TUF remote mirror: tuf: failed to download 13.root.json: …``.
            With another log key in the variable: ``no matching signatures: error verifying
            bundle: verifying bundle: rekor log public key not found for payload``.
            The entry is ``hashedrekord`` 0.0.1.

cosign 3 -> Rekor v1 and cosign 3 -> Rekor v2 (the same two files, ``api-version`` differs)
    signing config: ``cosign signing-config create --no-default-fulcio --no-default-oidc
            --no-default-tsa --no-default-rekor
            --rekor=url=URL,api-version=1|2,start-time=2020-01-01T00:00:00Z,operator=local
            --rekor-config=ANY --out signing-config.json``
    trusted root:   ``cosign trusted-root create --no-default-ctfe --no-default-fulcio
            --no-default-rekor --no-default-tsa
            --rekor=url=URL,public-key=LOG_PUB_PEM,start-time=2020-01-01T00:00:00Z
            --out trusted-root.json`` (same flags for v1 and v2; the log id is derived from the
            key; for v2 the checkpoint origin is the host of ``url``, so rekor-tiles must run
            with ``--hostname`` equal to that host: ``RekorV2Server.origin``).
    sign:   ``cosign sign --key KEY --signing-config signing-config.json
            --trusted-root trusted-root.json [--bundle OUT.json] -y IMAGE@DIGEST``
            (never ``--rekor-url``/``--tlog-upload`` together with a signing config).
            Also seen working against v1 (not tried against v2): ``--use-signing-config=false
            --rekor-url URL`` (prints "Flag --rekor-url has been deprecated, please use a
            signing config …"); the entry is then ``dsse`` too.
    index:  cosign 3 prints NO index (stderr: ``Signing artifact...``, ``Wrote bundle to file
            OUT.json`` with ``--bundle``, ``Pushing signature to: REPO``). Read it from the
            ``--bundle`` file (a ``application/vnd.dev.sigstore.bundle.v0.3+json``):
            ``verificationMaterial.tlogEntries[0].logIndex``, a JSON *string* (``"1"``), also at
            ``….inclusionProof.logIndex``. Protobuf JSON leaves out zero values, so the log's
            first entry (index 0) has NO ``logIndex`` key at all: absent means 0.
            v1 entries are ``dsse`` 0.0.1 with ``integratedTime`` and ``inclusionPromise``;
            v2 entries are ``hashedrekord`` 0.0.2 without either (inclusion proof + checkpoint).
    verify: ``cosign verify --key COSIGN_PUB --trusted-root trusted-root.json IMAGE@DIGEST``
            (no environment variable needed). A trusted root naming another log key fails
            with ``no matching attestations: failed to verify log inclusion: not enough verified
            log entries from transparency log: 0 < 1`` (v1 and v2).

Timings seen (2 cores, idle): ``RekorV2Server`` starts in ~0.05 s and one cosign 3 signature
takes ~0.5 s with ``--checkpoint-interval 100ms`` (the shared recipe saw ~11 s a signature with
rekor-tiles' default 10 s, ~1.7 s with 1 s). ``RekorV1Server`` (mariadb-install-db, mariadbd,
schema, Trillian, createtree, rekor-server) starts in ~0.6 s (~1.1 s with a build running beside
it); one cosign 2 or 3 signature takes ~0.5 s with Trillian's ``--sequencer_interval 50ms``.
Both stop in ~0.05 s: Trillian's processes are killed, since on SIGTERM they sit 5 s in their
graceful stop.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REKOR_BINARIES = (
    "rekor-tiles-posix",
    "rekor-server",
    "rekor-cli",
    "trillian_log_server",
    "trillian_log_signer",
    "createtree",
)
MARIADB_BINARIES = ("mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin")
TLOG_START_TIME = "2020-01-01T00:00:00Z"
"""``start-time`` of the log in cosign 3's signing config and trusted root (before any entry)."""

_PROVISION_HINT = "run `bash scripts/provision-rekor.sh` in the repo root to build and link them"
_LOG_TAIL_LINES = 40
_LOG_HEAD_LINES = 10
# Trillian's log server and signer sit 5 s in their graceful stop on SIGTERM (seen, even with
# rekor-server gone): the log is thrown away anyway, so they are killed.
_TRILLIAN_STOP = signal.SIGKILL


class RekorToolsNotProvisionedError(RuntimeError):
    """The Rekor binaries under ``.tools/rekor/`` (or MariaDB) are missing or unusable."""


class RekorStartError(RuntimeError):
    """A Rekor server (or a process it needs) did not come up; the message quotes its log."""


@dataclass(frozen=True)
class RekorTools:
    """Paths of everything a local Rekor needs."""

    rekor_tiles_posix: Path
    rekor_server: Path
    rekor_cli: Path
    trillian_log_server: Path
    trillian_log_signer: Path
    createtree: Path
    trillian_schema: Path
    """Trillian's MySQL schema (``storage/mysql/schema/storage.sql``)."""
    mariadbd: Path
    mariadb_install_db: Path
    mariadb: Path
    mariadb_admin: Path
    openssl: Path


def _check_executable(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        raise RekorToolsNotProvisionedError(f"{what} not found at {path}: {_PROVISION_HINT}")
    if path.is_dir():
        raise RekorToolsNotProvisionedError(f"{what} at {path} is a directory: {_PROVISION_HINT}")
    if not os.access(path, os.X_OK):
        raise RekorToolsNotProvisionedError(
            f"{what} at {path} is not executable: {_PROVISION_HINT}"
        )
    return path


def _which(name: str) -> Path | None:
    # mariadbd lives in /usr/sbin, which a non-root PATH may lack
    path = os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/sbin:/usr/bin"
    found = shutil.which(name, path=path)
    return Path(found) if found else None


def find_rekor_tools(repo_root: Path) -> RekorTools:
    """Return the Rekor tools provisioned for the clone at ``repo_root``.

    Raises:
        RekorToolsNotProvisionedError: something is missing; the message says to run
            ``scripts/provision-rekor.sh``.
    """
    rekor_dir = repo_root.absolute() / ".tools" / "rekor"
    bins = {name: _check_executable(rekor_dir / "bin" / name, name) for name in REKOR_BINARIES}
    schema = rekor_dir / "trillian-storage.sql"
    if not schema.is_file():
        raise RekorToolsNotProvisionedError(f"{schema} not found: {_PROVISION_HINT}")
    maria = {name: _check_executable(_which(name), name) for name in MARIADB_BINARIES}
    openssl = _which("openssl")
    if openssl is None:
        raise RekorToolsNotProvisionedError("openssl not found on PATH (apt-get install openssl)")
    return RekorTools(
        rekor_tiles_posix=bins["rekor-tiles-posix"],
        rekor_server=bins["rekor-server"],
        rekor_cli=bins["rekor-cli"],
        trillian_log_server=bins["trillian_log_server"],
        trillian_log_signer=bins["trillian_log_signer"],
        createtree=bins["createtree"],
        trillian_schema=schema,
        mariadbd=maria["mariadbd"],
        mariadb_install_db=maria["mariadb-install-db"],
        mariadb=maria["mariadb"],
        mariadb_admin=maria["mariadb-admin"],
        openssl=openssl,
    )


# ---- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _base_dir() -> str | None:
    """``/dev/shm`` when usable (the log and MariaDB write small files often), else the temp dir."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """A log file for an error message: all of it when short, else its head and its tail.

    The head matters: Go's flag package prints the error first and then the whole usage.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    all_lines = text.splitlines()
    head = _LOG_HEAD_LINES
    if len(all_lines) <= head + lines:
        return "\n".join(all_lines)
    skipped = len(all_lines) - head - lines
    return "\n".join([*all_lines[:head], f"[… {skipped} lines …]", *all_lines[-lines:]])


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """``GET url`` (``http://127.0.0.1:PORT/path``) -> ``(status, body)``; raises ``OSError``."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _answers(url: str) -> bool:
    try:
        status, _ = http_get(url, timeout=1.0)
    except OSError:
        return False
    return status == 200


class _Process:
    """One child process in its own session, output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RekorStartError(
                f"{self.name} exited with {code} during start-up; last lines of "
                f"{self.log_path}:\n{log_tail(self.log_path)}"
            )

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def _wait_until(
    ready: Callable[[], bool], procs: Sequence[_Process], what: str, timeout: float
) -> None:
    """Poll ``ready`` until true; a dead process or the deadline raise ``RekorStartError``."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check_alive()
        if ready():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- last lines of {p.log_path}:\n{log_tail(p.log_path)}" for p in procs
            )
            raise RekorStartError(f"{what} not ready within {timeout:.0f}s\n{tails}")
        time.sleep(0.02)


def _run(argv: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a short set-up command; a failure raises ``RekorStartError`` with its output."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=120, check=False, **kwargs
    )
    if result.returncode != 0:
        raise RekorStartError(
            f"{what} failed ({result.returncode}): {' '.join(argv)}\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        pass


@dataclass(frozen=True)
class Cosign3Config:
    """cosign 3's files for one log: ``--signing-config`` and ``--trusted-root``."""

    signing_config: Path
    trusted_root: Path


class _RekorServer:
    """What both generations share: work dir, processes, key, cosign 3 files, lifecycle."""

    api_version: int
    _prefix: str

    def __init__(self, tools: RekorTools, *, startup_timeout: float = 30.0) -> None:
        self.tools = tools
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=self._prefix, dir=_base_dir()))
        self.public_key_path = self.workdir / "log-public.pem"
        self._procs: list[_Process] = []
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: what cosign calls (``--rekor-url``, ``url=`` in configs)."""
        if self._url is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return self._url

    @property
    def public_key_pem(self) -> bytes:
        """The log's public key (PEM, ``-----BEGIN PUBLIC KEY-----``)."""
        return self.public_key_path.read_bytes()

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.popen.poll() is None for p in self._procs)

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> _Process:
        proc = _Process(name, argv, self.workdir / f"{name}.log", env, stop_signal=stop_signal)
        self._procs.append(proc)
        return proc

    def logs(self) -> str:
        """Every process log (tails), for debugging a failed test."""
        return "\n".join(f"--- {p.log_path}:\n{log_tail(p.log_path)}" for p in self._procs)

    # ---- cosign -----------------------------------------------------------------------------

    def cosign3_signing_config_args(self, out: Path) -> list[str]:
        """``cosign`` arguments (after the binary) that write a signing config naming this log."""
        return [
            "signing-config", "create",
            "--no-default-fulcio", "--no-default-oidc", "--no-default-tsa", "--no-default-rekor",
            f"--rekor=url={self.url},api-version={self.api_version},"
            f"start-time={TLOG_START_TIME},operator=local",
            "--rekor-config=ANY",
            "--out", str(out),
        ]  # fmt: skip

    def cosign3_trusted_root_args(self, out: Path, *, public_key: Path | None = None) -> list[str]:
        """``cosign`` arguments that write a trusted root with this log (its key, or another)."""
        key = public_key if public_key is not None else self.public_key_path
        return [
            "trusted-root", "create",
            "--no-default-ctfe", "--no-default-fulcio", "--no-default-rekor", "--no-default-tsa",
            f"--rekor=url={self.url},public-key={key},start-time={TLOG_START_TIME}",
            "--out", str(out),
        ]  # fmt: skip

    def write_cosign3_config(
        self, cosign3: Path, directory: Path, *, env: Mapping[str, str] | None = None
    ) -> Cosign3Config:
        """Run cosign 3 to write ``signing-config.json`` and ``trusted-root.json`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        config = Cosign3Config(directory / "signing-config.json", directory / "trusted-root.json")
        kwargs: dict[str, Any] = {"env": dict(env)} if env is not None else {}
        _run([str(cosign3), *self.cosign3_signing_config_args(config.signing_config)],
             "cosign signing-config create", **kwargs)  # fmt: skip
        _run([str(cosign3), *self.cosign3_trusted_root_args(config.trusted_root)],
             "cosign trusted-root create", **kwargs)  # fmt: skip
        return config

    # ---- lifecycle --------------------------------------------------------------------------

    def _start(self) -> None:
        raise NotImplementedError

    def start(self) -> _RekorServer:
        """Start every process and wait until the log answers; on failure, clean up and raise."""
        if self._url is not None:
            return self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _stop_extra(self) -> None:
        """Stop what is not a child process (the v2 tile server)."""

    def stop(self) -> None:
        """Stop every process (last started first) and delete the work dir."""
        self._stop_extra()
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        self._url = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url or 'not started'}, running={self.running})"


class RekorV2Server(_RekorServer):
    """Rekor v2: rekor-tiles' POSIX server on 127.0.0.1, with its read (tiles) API beside it.

    rekor-tiles serves only the write API (``POST /api/v2/log/entries``, gRPC) and ``/healthz``;
    tiles and the checkpoint live in ``storage_dir``, which a real deployment serves from a
    bucket. Here a small in-process HTTP server does that at ``tiles_url`` (``/checkpoint``,
    ``/tile/…``). The log's key is a fresh ECDSA P-256 key (``openssl``).
    """

    api_version = 2
    _prefix = "cosign-signer-rekor-v2-"

    def __init__(
        self,
        tools: RekorTools,
        *,
        checkpoint_interval: str = "100ms",
        batch_max_age: str = "20ms",
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(tools, startup_timeout=startup_timeout)
        self.checkpoint_interval = checkpoint_interval
        self.batch_max_age = batch_max_age
        self.storage_dir = self.workdir / "storage"
        self.private_key_path = self.workdir / "log-private.pem"
        self.hostname = "127.0.0.1"
        self.grpc_port: int | None = None
        self._tiles: http.server.ThreadingHTTPServer | None = None
        self._tiles_thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        """The checkpoint origin (first line of the signed note); equals the host of ``url``."""
        return self.hostname

    @property
    def tiles_url(self) -> str:
        """``http://127.0.0.1:PORT`` serving ``storage_dir`` (the tlog-tiles read API)."""
        if self._tiles is None:
            raise RuntimeError("RekorV2Server has not been started")
        return f"http://127.0.0.1:{self._tiles.server_address[1]}"

    def checkpoint(self) -> str:
        """The latest checkpoint, as published in ``storage_dir``."""
        return (self.storage_dir / "checkpoint").read_text(encoding="utf-8")

    def _make_key(self) -> None:
        openssl = str(self.tools.openssl)
        _run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", str(self.private_key_path)], "openssl genpkey")  # fmt: skip
        _run([openssl, "pkey", "-in", str(self.private_key_path), "-pubout",
              "-out", str(self.public_key_path)], "openssl pkey -pubout")  # fmt: skip

    def _start(self) -> None:
        self._make_key()
        for attempt in range(3):
            http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
            proc = self._spawn(
                "rekor-tiles",
                [
                    str(self.tools.rekor_tiles_posix), "serve",
                    "--hostname", self.hostname,
                    "--http-address", "127.0.0.1", "--http-port", str(http_port),
                    "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc_port),
                    "--http-metrics-port", str(metrics_port),
                    "--checkpoint-interval", self.checkpoint_interval,
                    "--batch-max-age", self.batch_max_age,
                    "--storage-dir", str(self.storage_dir),
                    "--signer-filepath", str(self.private_key_path),
                ],
            )  # fmt: skip
            try:
                _wait_until(
                    functools.partial(_answers, f"http://127.0.0.1:{http_port}/healthz"),
                    [proc],
                    "rekor-tiles",
                    self.startup_timeout,
                )
            except RekorStartError as exc:
                self._procs.remove(proc)
                proc.stop()
                if "address already in use" in str(exc) and attempt < 2:
                    shutil.rmtree(self.storage_dir, ignore_errors=True)
                    continue
                raise
            break
        _wait_until(
            (self.storage_dir / "checkpoint").is_file,
            self._procs,
            "rekor-tiles' first checkpoint",
            self.startup_timeout,
        )
        self.grpc_port = grpc_port
        handler = functools.partial(_QuietHandler, directory=str(self.storage_dir))
        self._tiles = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._tiles_thread = threading.Thread(
            target=self._tiles.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="rekor-v2-tiles",
            daemon=True,
        )
        self._tiles_thread.start()
        self._url = f"http://127.0.0.1:{http_port}"

    def _stop_extra(self) -> None:
        if self._tiles is not None:
            self._tiles.shutdown()
            self._tiles.server_close()
            self._tiles = None
        if self._tiles_thread is not None:
            self._tiles_thread.join(timeout=5)
            self._tiles_thread = None

    def __enter__(self) -> RekorV2Server:
        self.start()
        return self


class RekorV1Server(_RekorServer):
    """Rekor v1: ``rekor-server`` on Trillian (log server + signer) on a private MariaDB.

    MariaDB runs from a fresh datadir in the work dir, reached through a Unix socket only
    (``--skip-networking``); Trillian's schema is loaded, a tree is made with ``createtree``.
    rekor-server signs with its built-in in-memory key; ``public_key_pem`` is what it serves at
    ``/api/v1/log/publicKey`` (also written to ``public_key_path``).
    """

    api_version = 1
    _prefix = "cosign-signer-rekor-v1-"
    _DB_USER = "trillian"
    _DB_PASSWORD = "trillian-local"  # a throwaway database on a private socket

    def __init__(
        self,
        tools: RekorTools,
        *,
        sequencer_interval: str = "50ms",
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(tools, startup_timeout=startup_timeout)
        self.sequencer_interval = sequencer_interval
        self.datadir = self.workdir / "mysql"
        self.socket_path = self.workdir / "mysql.sock"
        self.tree_id: int | None = None

    def _dsn(self, database: str) -> str:
        return f"{self._DB_USER}:{self._DB_PASSWORD}@unix({self.socket_path})/{database}"

    def _mariadb_options(self) -> list[str]:
        user = pwd.getpwuid(os.geteuid()).pw_name
        return [
            "--no-defaults",
            f"--user={user}",
            f"--datadir={self.datadir}",
            # small and unsafe on purpose: a throwaway log for tests
            "--innodb-log-file-size=16M",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
        ]

    def _start_mariadb(self) -> None:
        t = self.tools
        _run(
            [str(t.mariadb_install_db), *self._mariadb_options(),
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            "mariadb-install-db",
        )  # fmt: skip
        proc = self._spawn(
            "mariadbd",
            [str(t.mariadbd), *self._mariadb_options(), f"--socket={self.socket_path}",
             f"--pid-file={self.workdir / 'mariadbd.pid'}", "--skip-networking"],
        )  # fmt: skip
        client = ["--no-defaults", f"--socket={self.socket_path}", "--user=root"]
        _wait_until(
            lambda: (
                subprocess.run(
                    [str(t.mariadb_admin), *client, "ping"], capture_output=True, check=False
                ).returncode
                == 0
            ),
            [proc],
            "mariadbd",
            self.startup_timeout,
        )
        user = f"'{self._DB_USER}'@'localhost'"
        _run(
            [str(t.mariadb), *client, "-e",
             f"CREATE DATABASE trillian; CREATE DATABASE rekorindex; "
             f"CREATE USER {user} IDENTIFIED BY '{self._DB_PASSWORD}'; "
             f"GRANT ALL ON trillian.* TO {user}; GRANT ALL ON rekorindex.* TO {user};"],
            "creating the Trillian database",
        )  # fmt: skip
        with t.trillian_schema.open("rb") as schema:
            _run([str(t.mariadb), *client, "trillian"], "loading Trillian's schema", stdin=schema)

    def _start_trillian(self) -> int:
        t = self.tools
        ports = {name: free_port() for name in ("rpc", "http", "sig_rpc", "sig_http")}
        server = self._spawn(
            "trillian_log_server",
            [str(t.trillian_log_server), "--storage_system=mysql",
             f"--mysql_uri={self._dsn('trillian')}",
             f"--rpc_endpoint=127.0.0.1:{ports['rpc']}",
             f"--http_endpoint=127.0.0.1:{ports['http']}"],
            stop_signal=_TRILLIAN_STOP,
        )  # fmt: skip
        signer = self._spawn(
            "trillian_log_signer",
            [str(t.trillian_log_signer), "--storage_system=mysql",
             f"--mysql_uri={self._dsn('trillian')}",
             f"--rpc_endpoint=127.0.0.1:{ports['sig_rpc']}",
             f"--http_endpoint=127.0.0.1:{ports['sig_http']}",
             "--force_master", f"--sequencer_interval={self.sequencer_interval}"],
            stop_signal=_TRILLIAN_STOP,
        )  # fmt: skip
        _wait_until(
            lambda: (
                _answers(f"http://127.0.0.1:{ports['http']}/healthz")
                and _answers(f"http://127.0.0.1:{ports['sig_http']}/healthz")
            ),
            [server, signer],
            "Trillian log server and signer",
            self.startup_timeout,
        )
        result = _run(
            [str(t.createtree), f"--admin_server=127.0.0.1:{ports['rpc']}",
             "--display_name=cosign-signer-test"],
            "createtree",
        )  # fmt: skip
        self.tree_id = int(result.stdout.strip())
        return ports["rpc"]

    def _start(self) -> None:
        t = self.tools
        self._start_mariadb()
        trillian_port = self._start_trillian()
        port = free_port()
        config = self.workdir / "rekor-server.yaml"  # so no ~/.rekor-server.yaml is read
        config.write_text("{}\n", encoding="utf-8")
        env = {**os.environ, "REKOR_METRICS_ADDR": f"127.0.0.1:{free_port()}"}
        rekor = self._spawn(
            "rekor-server",
            [str(t.rekor_server), "serve", f"--config={config}",
             "--rekor_server.address=127.0.0.1", f"--port={port}",
             "--rekor_server.hostname=127.0.0.1",
             "--trillian_log_server.address=127.0.0.1",
             f"--trillian_log_server.port={trillian_port}",
             f"--trillian_log_server.tlog_id={self.tree_id}",
             "--search_index.storage_provider=mysql",
             f"--search_index.mysql.dsn={self._dsn('rekorindex')}"],
            env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        _wait_until(
            lambda: _answers(f"{url}/api/v1/log"), self._procs, "rekor-server", self.startup_timeout
        )
        status, body = http_get(f"{url}/api/v1/log/publicKey")
        if status != 200 or b"BEGIN PUBLIC KEY" not in body:
            raise RekorStartError(
                f"GET {url}/api/v1/log/publicKey -> {status}: {body[:300]!r}\n{self.logs()}"
            )
        self.public_key_path.write_bytes(body)
        rekor.check_alive()
        self._url = url

    def log_info(self) -> dict[str, Any]:
        """``GET /api/v1/log``: ``treeSize``, ``rootHash``, ``signedTreeHead``, ``treeID``."""
        status, body = http_get(f"{self.url}/api/v1/log")
        if status != 200:
            raise RuntimeError(f"GET {self.url}/api/v1/log -> {status}: {body[:300]!r}")
        info: dict[str, Any] = json.loads(body)
        return info

    def cosign2_env(self) -> dict[str, str]:
        """What ``cosign verify`` of cosign 2 needs to trust this log's signed entries."""
        return {"SIGSTORE_REKOR_PUBLIC_KEY": str(self.public_key_path)}

    def __enter__(self) -> RekorV1Server:
        self.start()
        return self
