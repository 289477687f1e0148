"""Small helpers about OS processes and log files, by pid only (never by name)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["alive", "command_line", "terminate", "log_tail"]


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child; True when it was reaped."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: someone else reaps it
        return False
    return done == pid


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie.

    >>> alive(os.getpid())
    True
    """
    if pid <= 0 or _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def command_line(pid: int) -> list[str]:
    """The argv of process ``pid`` (empty when it is gone or unreadable).

    >>> import sys
    >>> bool(command_line(os.getpid()))
    True
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return []
    except OSError:
        return []
    try:  # no procfs: ask ps (one string, split on whitespace)
        out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.split()


def terminate(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM ``pid``, wait up to ``grace_s`` seconds for it to exit, then SIGKILL it."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def log_tail(path: Path, lines: int = 20, start: int = 0, max_bytes: int = 1 << 20) -> list[str]:
    """The last ``lines`` lines of ``path`` from byte offset ``start`` on ([] when missing).

    At most the last ``max_bytes`` bytes are read.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
    ...     _ = f.write("one\\ntwo\\nthree\\n")
    >>> log_tail(Path(f.name), 2)
    ['two', 'three']
    >>> os.unlink(f.name)
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
