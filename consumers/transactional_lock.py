"""One live worker per transactional id on a host.

An exactly-once worker's transactional id is ``<group>.<worker id>``. Two live
workers with the same one fence each other: each new producer aborts the
other's open transaction, and both end up rolling back until they give up. The
default worker id is the host name, so two workers started on one host without
``--worker-id`` would do just that. :func:`hold_transactional_id` takes an
exclusive lock named after the id in the host's temporary directory and
refuses to start a second worker with a clear error. The operating system
drops the lock when its process ends, ``kill -9`` included, so a restarted
worker takes over its crashed self's id (and fences its transaction) at once.

Workers on different hosts (or in different containers) do not see each
other's locks: there, distinct host names, or distinct ``--worker-id``, are what
keeps the ids apart.

>>> import tempfile
>>> directory = tempfile.mkdtemp()
>>> with hold_transactional_id("workers.host-a", directory):
...     try:
...         with hold_transactional_id("workers.host-a", directory):
...             pass
...     except TransportError as err:
...         print(str(err).split(" (pid")[0])
another worker on this host is running with transactional id 'workers.host-a'
>>> with hold_transactional_id("workers.host-a", directory):  # free again once the first has ended
...     pass
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from stream_cd.errors import TransportError

__all__ = ["hold_transactional_id", "LOCK_DIR"]

LOCK_DIR = os.path.join(tempfile.gettempdir(), "stream-cd-workers")


@contextmanager
def hold_transactional_id(transactional_id: str, directory: str = LOCK_DIR) -> Iterator[None]:
    """Hold this host's lock on ``transactional_id`` while the block runs; a
    :class:`TransportError` when another live process holds it."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, urllib.parse.quote(transactional_id, safe="") + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise TransportError(
                f"another worker on this host is running with transactional id {transactional_id!r} (pid {holder}); "
                f"two live workers with one id fence each other: give each worker on a host its own --worker-id "
                f"(the default is the host name)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # drops the lock
