"""The one module that starts processes: find the binary, run it with a timeout, reap it.

Every child runs in its own process group with stdin closed; on timeout or interruption the whole
group is terminated, given a grace period, killed and reaped, so no orphan or zombie remains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

import attrs

from cosign_signer.command import CosignCapabilities
from cosign_signer.errors import CosignNotFoundError

__all__ = [
    "ChildSet",
    "Completed",
    "ProcessTimeout",
    "find_executable",
    "probe_capabilities",
    "run",
    "stop_all_children",
]

_log = logging.getLogger("cosign_signer")

#: Seconds between SIGTERM and SIGKILL when a process group must stop.
GRACE_SECONDS = 3.0
_PROBE_TIMEOUT = 30.0


@attrs.frozen
class Completed:
    """A finished process."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


class ProcessTimeout(Exception):  # noqa: N818 - internal signal, turned into CosignTimeoutError
    """The process did not finish in time; its group was killed and reaped."""

    def __init__(self, timeout: float, stderr: str) -> None:
        self.timeout = timeout
        self.stderr = stderr
        super().__init__(f"timed out after {timeout:g} s")


def find_executable(binary: str, *, path: str | None = None) -> str:
    """Return the absolute path of ``binary`` or raise :class:`CosignNotFoundError` saying why."""
    if os.sep in binary:
        candidate = os.path.abspath(binary)
        if not os.path.lexists(candidate):
            raise CosignNotFoundError(binary, "no such file")
    else:
        found = shutil.which(binary, path=path)
        if found is None:
            # which() skips non-executables: tell them apart from a plain absence.
            for folder in (path or os.environ.get("PATH", "")).split(os.pathsep):
                candidate = os.path.join(folder or ".", binary)
                if os.path.isdir(candidate):
                    raise CosignNotFoundError(binary, f"{candidate} is a directory")
                if os.path.isfile(candidate):
                    raise CosignNotFoundError(binary, f"{candidate} is not executable")
            raise CosignNotFoundError(binary, "not found on PATH")
        candidate = os.path.abspath(found)
    try:
        info = os.stat(candidate)
    except OSError as exc:
        raise CosignNotFoundError(binary, f"{candidate}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CosignNotFoundError(binary, f"{candidate} is a directory")
    if not os.access(candidate, os.X_OK):
        raise CosignNotFoundError(binary, f"{candidate} is not executable")
    return candidate


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
    input: str | None = None,  # noqa: A002 - the name subprocess uses
    children: ChildSet | None = None,
) -> Completed:
    """Run ``argv`` (never through a shell) and return its outcome.

    stdin is closed unless ``input`` is given (credential helpers read the server on stdin).
    ``children``: the owner's set of running children (a batch's), so that the owner can stop
    exactly its own; a child started after that set was closed is stopped at once.

    Raises :class:`ProcessTimeout` after ``timeout`` seconds, :class:`CosignNotFoundError` when the
    binary cannot be started, and re-raises ``KeyboardInterrupt`` after stopping the child.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise CosignNotFoundError(argv[0], exc.strerror or str(exc)) from None
    _LIVE.add(process)
    if children is not None and not children.add(process):
        _stop_group(process)  # its owner is stopping: don't let it run
    try:
        stdout, stderr = process.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        _, stderr = _drain(process)
        raise ProcessTimeout(timeout, stderr) from None
    except BaseException:
        _stop_group(process)
        _drain(process)
        raise
    finally:
        _LIVE.discard(process)
        if children is not None:
            children.discard(process)
    return Completed(process.returncode, stdout, stderr, time.monotonic() - started)


def _drain(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=GRACE_SECONDS)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return "", ""
    return out or "", err or ""


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group, wait a grace period, SIGKILL it, reap the child."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure nothing else of its group lingers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return


def _stop_groups(processes: Sequence[subprocess.Popen[str]]) -> None:
    """SIGTERM every process group, give them one shared grace period, SIGKILL what is left.

    Safe while other threads wait for the same processes: whichever thread reaps one first wins.
    """
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        # The leader ignored SIGTERM, or left members of its group behind: no more waiting.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class ChildSet:
    """Children running now for one owner (a batch, or the whole library), to stop them together.

    ``stop_all(close=True)`` also closes the set: a child added later (started by a worker thread
    in a race with the stop) is refused, and :func:`run` stops it at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: set[subprocess.Popen[str]] = set()
        self._closed = False

    def add(self, process: subprocess.Popen[str]) -> bool:
        """Track ``process``; ``False`` (not tracked) when the set is closed."""
        with self._lock:
            if self._closed:
                return False
            self._items.add(process)
            return True

    def discard(self, process: subprocess.Popen[str]) -> None:
        with self._lock:
            self._items.discard(process)

    def stop_all(self, *, close: bool = False) -> None:
        """Terminate every tracked process group: SIGTERM, a grace period, SIGKILL."""
        with self._lock:
            self._closed = self._closed or close
            items = list(self._items)
        _stop_groups(items)


_LIVE = ChildSet()


def stop_all_children() -> None:
    """Stop every cosign process group this library has running: SIGTERM, grace, SIGKILL."""
    _LIVE.stop_all()


_CAPS_LOCK = threading.Lock()
_CAPS_CACHE: dict[tuple[str, int, int, str], CosignCapabilities] = {}


def probe_capabilities(
    binary: str, *, env: Mapping[str, str] | None = None, command: str = "sign"
) -> CosignCapabilities:
    """Read what ``binary``'s ``command`` supports from ``cosign COMMAND --help``.

    Cached per file, mtime and command.
    """
    info = os.stat(binary)
    cache_key = (binary, info.st_mtime_ns, info.st_size, command)
    with _CAPS_LOCK:
        cached = _CAPS_CACHE.get(cache_key)
    if cached is not None:
        return cached
    try:
        done = run([binary, command, "--help"], env=env or os.environ, timeout=_PROBE_TIMEOUT)
    except ProcessTimeout:
        raise CosignNotFoundError(
            binary, f"'cosign {command} --help' did not answer in time"
        ) from None
    text = done.stdout + done.stderr
    caps = CosignCapabilities.from_help(text)
    if done.returncode != 0 or not caps.has("key"):
        raise CosignNotFoundError(
            binary, f"does not look like cosign ('{command} --help' exited {done.returncode})"
        )
    _log.debug("cosign %s: %s generation, %d sign flags", binary, caps.generation, len(caps.flags))
    with _CAPS_LOCK:
        _CAPS_CACHE[cache_key] = caps
    return caps
