"""How the worker's own consumer keeps its group membership while a fetch process reads.

With a fetch process, this process's consumer fetches nothing (its partitions are
paused): it only joins, is assigned partitions and notes rebalances, and kafka-python
moves a join on only while ``poll`` waits. :meth:`KafkaMembership._keep_membership`
decides when to poll it, and for how long, so that a rebalance is joined promptly and a
settled member costs the worker's learning and serving almost nothing. The
:class:`KafkaMembership` mixin is this part of
:class:`consumers.kafka_transport.KafkaTransport`.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.coordinator.base import MemberState

__all__ = ["KafkaMembership", "MEMBERSHIP_POLL_S", "IDLE_MEMBERSHIP_POLL_S"]

# With a fetch process: how often the group member polls once settled, while batches
# come. A rebalance the group starts is seen sooner (the group watch sees it within a
# second, and the polls wait until this member has joined); this only bounds how late a
# change seen in metadata alone (more partitions) is noticed, which kafka-python refreshes
# every 5 minutes anyway, and keeps inside the group's max.poll.interval (5 minutes). Such a poll usually takes 1-2 ms, but
# on a busy machine now and then 100-250 ms (it hands work to kafka-python's network
# thread and waits for it), and every request fetched meanwhile waits too: once a second,
# that was the worker's whole latency tail at 1,000 requests/s; every 10 s, still 1-2 %
# of requests.
MEMBERSHIP_POLL_S = 60.0
# With nothing fetched for this long, the member polls this often: a poll is what shows
# that the broker went away (then the worker starts over with new clients), and an idle
# worker has no request to delay.
IDLE_MEMBERSHIP_POLL_S = 1.0


class KafkaMembership:
    """The group member's polls (a mixin of :class:`consumers.kafka_transport.KafkaTransport`)."""

    consumer: Any
    transactional: bool
    _fetcher: Any
    _landing: Any
    _watch: Any
    _membership_polled: float
    _generation: int
    _joined_at: float
    _last_batch: float

    def _keep_membership(self, deadline: float) -> None:
        """Poll this process's consumer for the group's sake: joins, rebalances, the poll
        interval (heartbeats have their own thread). Anything it fetched is not used.

        kafka-python moves a join on only while poll waits, so it waits while the group is
        unsettled: this member holds no partitions, is not a stable member (``group_metadata``:
        joining, or forgotten by the group), or the coordinator has shown the group rebalancing
        since this member last joined (:mod:`consumers.group_watch`, asked every second; the
        polls then wait until kafka-python's heartbeat, every ``heartbeat_interval_ms``, has
        heard of it too and the member has joined: a few seconds without serving, before a
        rebalance that takes the partitions away anyway). Once settled, a poll without waiting
        every ``MEMBERSHIP_POLL_S`` is enough while batches come (each costs one to two
        milliseconds: every 0.1 s, that was 1-2 % of the worker's time), and every
        ``IDLE_MEMBERSHIP_POLL_S`` when none has come for that long. A settled poll that is
        due waits for a moment with no batch waiting (for at most another ``MEMBERSHIP_POLL_S``,
        still inside max.poll.interval), and for an at-least-once commit in flight, which
        uses the consumer, to land: the worker never stops serving to wait for either.
        """
        settled = bool(self.consumer.assignment()) and self._stable_member()
        now = time.monotonic()
        if settled:
            since = now - self._membership_polled
            idle = now - self._last_batch >= IDLE_MEMBERSHIP_POLL_S
            if since < (IDLE_MEMBERSHIP_POLL_S if idle else MEMBERSHIP_POLL_S):
                return
            if self._landing is not None and not self._landing[0].done() and not self.transactional:
                return
            if since < 2 * MEMBERSHIP_POLL_S and self._fetcher is not None and self._fetcher.has_batch():
                return
        self._land()  # an at-least-once commit in flight uses the consumer
        if not settled:
            self.consumer.poll(timeout_ms=max(1, int(1000 * (deadline - now))))
        else:
            self.consumer.poll(timeout_ms=0)
        self._membership_polled = now

    def _stable_member(self) -> bool:
        """Whether this member is stable in its group and the coordinator has not shown the
        group rebalancing (or without it) since this member's generation began."""
        metadata = self.consumer.group_metadata()
        if metadata.generation_id != self._generation:
            self._generation, self._joined_at = metadata.generation_id, time.monotonic()
        if self._watch is not None:
            self._watch.member_id = metadata.member_id
        if metadata.state != MemberState.STABLE:
            return False
        return self._watch is None or not self._watch.unsettled_since(self._joined_at)
