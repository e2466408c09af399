"""A real distribution registry (Debian's ``docker-registry``) on 127.0.0.1, for tests.

The config is written as JSON, which the registry's YAML parser reads as well, so no YAML
library is needed. It only uses keys that distribution 2.8 (Debian's today) and 3.x share:
``version: 0.1``, ``log``, ``storage.filesystem``, ``http.addr``/``http.secret``, ``auth.htpasswd``.
``http.debug`` is left out, so no debug/metrics listener is started (in 2.8 and 3.x alike).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import bcrypt


class RegistryStartError(RuntimeError):
    """The registry did not come up (its log is quoted in the message)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Also the way to get a "registry port closed" reference: nothing will answer on it (until some
    other process happens to take it, which is unlikely within a test).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def default_base_dir() -> Path | None:
    """Where registries keep their storage: ``/dev/shm`` when usable, else the temp dir.

    The filesystem driver writes several small files per request; on the ext4 disk of a CI
    machine that is ~8 ms a request, on tmpfs ~2 ms (60 pushes: 2.4 s vs 0.6 s).
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


class RegistryAuth(Protocol):
    """How the registry authenticates clients: renders the config's ``auth:`` section.

    ``HtpasswdAuth`` is the one used today; a token-auth server would be another implementation.
    """

    @property
    def credentials(self) -> tuple[str, str] | None:
        """``(user, password)`` a client presents, or ``None``."""
        ...

    def auth_config(self, workdir: Path) -> dict[str, object]:
        """Write any files the auth needs into ``workdir``; return the ``auth:`` mapping."""
        ...


@dataclass(frozen=True)
class HtpasswdAuth:
    """HTTP Basic auth against an htpasswd file with one bcrypt entry (realm ``test``)."""

    user: str
    password: str = field(repr=False)
    realm: str = "test"
    # The registry checks the bcrypt hash on EVERY request: the minimum cost keeps that ~1 ms.
    bcrypt_rounds: int = 4

    @property
    def credentials(self) -> tuple[str, str]:
        return (self.user, self.password)

    def auth_config(self, workdir: Path) -> dict[str, object]:
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=self.bcrypt_rounds))
        path = workdir / "htpasswd"
        path.write_text(f"{self.user}:{hashed.decode()}\n", encoding="utf-8")
        return {"htpasswd": {"realm": self.realm, "path": str(path)}}


class RegistryFactory(Protocol):
    """Type of the ``registry_factory`` fixture: makes a started server, closed at teardown."""

    def __call__(
        self, *, auth: RegistryAuth | None = None, port: int | None = None
    ) -> RegistryServer: ...


class RegistryServer:
    """A ``docker-registry serve`` process on 127.0.0.1, storage in a private temp dir.

    Use as a context manager (start on enter; stop and delete everything on exit). Storage, config
    and log live in one private directory under ``base_dir`` (default: ``default_base_dir()``).
    ``stop()`` and
    ``start()`` (or ``restart()``) keep the storage and the port, so a test can take the registry
    down and bring it back with its images.
    """

    def __init__(
        self,
        binary: Path,
        *,
        auth: RegistryAuth | None = None,
        port: int | None = None,
        startup_timeout: float = 15.0,
        base_dir: Path | None = None,
    ) -> None:
        self.binary = binary
        self.auth = auth
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self._port: int | None = port
        self._workdir = Path(
            tempfile.mkdtemp(prefix="cosign-signer-registry-", dir=base_dir or default_base_dir())
        )
        self.storage_dir = self._workdir / "storage"
        self.storage_dir.mkdir()
        self.log_path = self._workdir / "registry.log"
        self._http_secret = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- addresses and credentials -------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the registry has not been started yet")
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """``(user, password)`` when the registry requires auth, else ``None``."""
        return self.auth.credentials if self.auth is not None else None

    @property
    def user(self) -> str | None:
        creds = self.credentials
        return creds[0] if creds else None

    @property
    def password(self) -> str | None:
        creds = self.credentials
        return creds[1] if creds else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def write_docker_config(self, directory: Path) -> Path:
        """Write ``directory/config.json`` with this registry's credentials (as ``docker login``).

        Point ``DOCKER_CONFIG`` at ``directory``. Without auth the file has no entry for the host.
        """
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        auths: dict[str, dict[str, str]] = {}
        creds = self.credentials
        if creds is not None:
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            auths[self.host] = {"auth": token}
        path = directory / "config.json"
        path.write_text(json.dumps({"auths": auths}), encoding="utf-8")
        path.chmod(0o600)
        return directory

    def read_log(self) -> str:
        """The registry's own log (level ``warn``), for debugging a failed test."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # ---- lifecycle ------------------------------------------------------------------------------

    def _config(self, port: int) -> dict[str, object]:
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": self._http_secret},
        }
        if self.auth is not None:
            config["auth"] = self.auth.auth_config(self._workdir)
        return config

    def start(self) -> RegistryServer:
        """Start the registry and wait until ``GET /v2/`` answers (200 or 401).

        A new server picks a free port (retrying if another process grabs it first); a restarted
        one, or one given ``port=``, reuses its port.
        """
        if self.running:
            return self
        attempts = 1 if (self._fixed_port or self._port is not None) else 5
        last_error: RegistryStartError | None = None
        for _ in range(attempts):
            port = self._port if self._port is not None else free_port()
            try:
                self._spawn(port)
            except RegistryStartError as exc:
                last_error = exc
                if "address already in use" not in str(exc):
                    raise
                continue
            self._port = port
            return self
        assert last_error is not None
        raise last_error

    def _spawn(self, port: int) -> None:
        config_path = self._workdir / "config.json"
        config_path.write_text(json.dumps(self._config(port), indent=2), encoding="utf-8")
        # REGISTRY_* variables override the config file: don't let the caller's leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(self.binary), "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        self._proc = proc
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                raise RegistryStartError(
                    f"registry exited with {proc.returncode} on port {port}:\n{self.read_log()}"
                )
            if _answers_v2(port):
                if proc.poll() is None:  # not some other server that owns the port
                    return
                continue
            time.sleep(0.02)
        self._terminate()
        raise RegistryStartError(
            f"registry did not answer on port {port} within {self.startup_timeout}s:\n"
            f"{self.read_log()}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        """Terminate the registry and wait for it; storage and port are kept for ``start()``."""
        self._terminate()

    def restart(self) -> None:
        """Stop and start again on the same port, with the same images."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the storage, config and log."""
        self._terminate()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> RegistryServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.host if self._port is not None else "not started"
        return f"RegistryServer({where}, auth={self.auth!r}, running={self.running})"


def _answers_v2(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/v2/")
        status = conn.getresponse().status
    except OSError:
        return False
    finally:
        conn.close()
    return status in (200, 401)
