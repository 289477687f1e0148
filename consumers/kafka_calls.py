"""Calls into kafka-python that may never return, run in threads of their own.

kafka-python's transactional calls can wait forever on a coordinator that never comes
back, and its clients' ``close`` can hang on a broker that went away: the caller waits
for a :class:`Call` with a limit, or goes on while it runs.

>>> Call(sum, [1, 2]).result(1.0)
3
>>> within(1.0, max, 4, 9)
9
"""

from __future__ import annotations

import threading

__all__ = ["Call", "within"]


class Call:
    """``fn(*args)`` running in a thread of its own, so that the caller can wait for it
    with a limit (kafka-python's transactional calls can wait forever on a coordinator
    that never comes back), or go on while it runs; a call that never returns is left
    to finish, or not, in its thread."""

    def __init__(self, fn, *args) -> None:
        self._box: dict = {}
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="stream-cd-kafka-call", daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._box["result"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            self._box["error"] = err

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, seconds: float):
        """What the call returned, or the exception it raised; TimeoutError if it has not
        returned within ``seconds``."""
        self._thread.join(max(0.0, seconds))
        if self._thread.is_alive():
            raise TimeoutError(f"no answer in {seconds:.0f} s")
        if "error" in self._box:
            raise self._box["error"]
        return self._box.get("result")


def within(seconds: float, fn, *args):
    """Run ``fn(*args)``, raising TimeoutError if it has not returned in ``seconds``."""
    return Call(fn, *args).result(seconds)
