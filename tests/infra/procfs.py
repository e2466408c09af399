"""Look at processes through /proc (Linux): liveness, zombies, every process's argv.

Used to prove process hygiene (no orphan, no zombie after a timeout or an interrupt) and that no
secret ever reaches any process's command line, which every user of the machine can read.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")


def state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (``R``, ``S``, ``Z``…), or ``None`` when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) S ppid …": comm may hold spaces and parentheses; the state follows the last ')'.
    return text.rsplit(")", 1)[1].split()[0]


def parent(pid: int) -> int | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(text.rsplit(")", 1)[1].split()[1])


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not dead (a zombie, ``Z``, or dying, ``X``)."""
    return state(pid) not in (None, "Z", "X")


def zombie_children(of: int | None = None) -> list[int]:
    """Zombie processes whose parent is ``of`` (default: this process): children never reaped."""
    me = os.getpid() if of is None else of
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if parent(pid) == me and state(pid) == "Z":
                found.append(pid)
    return found


def children(of: int | None = None) -> list[int]:
    """Live processes whose parent is ``of`` (default: this process)."""
    me = os.getpid() if of is None else of
    return [
        int(e.name)
        for e in PROC.iterdir()
        if e.name.isdigit() and parent(int(e.name)) == me and is_running(int(e.name))
    ]


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` as /proc shows it to everyone (``[]`` when gone or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def environ(pid: int) -> dict[str, str]:
    """The environment of ``pid`` (readable only by its owner and root)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {k: v for k, _, v in pairs}


class CmdlineSampler:
    """Read every process's /proc/PID/cmdline in a loop, in a background thread.

    ``seen`` maps each distinct command line (joined with spaces) to how often it was read;
    use as a context manager around the code under test.
    """

    def __init__(self, interval: float = 0.0) -> None:
        self.interval = interval
        self.seen: dict[str, int] = {}
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cmdline-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in PROC.iterdir():
                if entry.name.isdigit():
                    line = " ".join(cmdline(int(entry.name)))
                    if line:
                        self.seen[line] = self.seen.get(line, 0) + 1
            self.rounds += 1
            if self.interval:
                time.sleep(self.interval)

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=10)
