"""The broker's view of the worker's consumer group, asked in a thread of its own.

A worker with a fetch process polls its group member rarely while batches come
(see ``consumers.kafka_transport``): a poll can stall it for 100-250 ms on a busy
machine. It must still join a rebalance that another member starts (one joining
late, one leaving) within seconds, or the whole group waits for it. kafka-python's
heartbeat learns of such a rebalance, but says so through no public call; the
group coordinator does: ``describe_groups`` gives the group's state and members.
A :class:`GroupWatch` asks it every :data:`WATCH_S` seconds from its own thread,
with an admin client of its own, and keeps the latest answer: whether the group
is in a state this member must act on (not ``Stable``, or ``Stable`` without
this member: the group has forgotten it), and when it was asked.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kafka import KafkaAdminClient

__all__ = ["GroupWatch", "WATCH_S"]

log = logging.getLogger(__name__)

WATCH_S = 1.0  # how often the coordinator is asked; each answer takes about a millisecond


class GroupWatch:
    """Watches ``group`` through the admin client made of ``admin_config``; never raises.

    ``member_id`` is the member this process is (set it when it joins); until then any
    state counts as settled.
    """

    def __init__(self, admin_config: dict[str, Any], group: str, every_s: float = WATCH_S) -> None:
        self.group = group
        self.member_id = ""
        self._config = admin_config
        self._every_s = every_s
        self._latest = (float("-inf"), True)  # the latest answer: when it was asked, and settled or not
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-cd-group-watch", daemon=True)
        self._thread.start()

    def unsettled_since(self, moment: float) -> bool:
        """Whether the latest answer, to a question asked after ``moment`` (``time.monotonic()``),
        showed the group rebalancing or without this member."""
        asked, ok = self._latest
        return asked > moment and not ok

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        admin = None
        warned = False
        while not self._stop.wait(self._every_s):
            try:
                if admin is None:
                    admin = KafkaAdminClient(**self._config)
                asked = time.monotonic()
                self._latest = (asked, settled(admin.describe_groups([self.group]).get(self.group), self.member_id))
                warned = False
            except Exception as err:  # noqa: BLE001 - no answer is no news: the member's own polls go on
                if not warned:
                    log.warning("cannot describe the consumer group %r (%r): a rebalance that another member "
                                "starts is joined at the next membership poll", self.group, err)
                    warned = True
                admin = _closed(admin)
        _closed(admin)


def settled(description: dict[str, Any] | None, member_id: str) -> bool:
    """Whether the coordinator's ``description`` of a group shows nothing for ``member_id``
    to join: the group is ``Stable`` with it among the members (any state counts while
    ``member_id`` is empty: the member has not joined yet).

    >>> settled({"group_state": "Stable", "members": [{"member_id": "m1"}]}, "m1")
    True
    >>> settled({"group_state": "PreparingRebalance", "members": [{"member_id": "m1"}]}, "m1")
    False
    >>> settled({"group_state": "Stable", "members": [{"member_id": "m2"}]}, "m1")
    False
    """
    if not member_id:
        return True
    if not description or description.get("error"):
        return True  # no news
    if description.get("group_state") != "Stable":
        return False
    return any(m.get("member_id") == member_id for m in description.get("members") or ())


def _closed(admin: KafkaAdminClient | None) -> None:
    """Close ``admin`` if there is one; None, for the caller to forget it."""
    if admin is not None:
        try:
            admin.close()
        except Exception as err:  # noqa: BLE001 - it is being thrown away
            log.debug("closing the group watch's admin client failed: %r", err)
    return None
