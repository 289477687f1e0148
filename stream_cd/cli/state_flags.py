"""Flags of the exactly-once model state: when snapshots are written, how many are kept,
and how large one may be (``worker``, and ``replay --checkpoint-dir``)."""

from __future__ import annotations

import argparse

from stream_cd.cli.options import non_negative_float, positive_int
from stream_cd.state.schedule import DEFAULT_RING, DEFAULT_SNAPSHOT_EVENTS, DEFAULT_SNAPSHOT_SECONDS, SnapshotSchedule
from stream_cd.worker import DEFAULT_MAX_SNAPSHOT_BYTES

__all__ = ["add_state_flags", "schedule_from_args"]


def add_state_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model state (exactly-once)")
    group.add_argument("--snapshot-every-events", type=positive_int, default=DEFAULT_SNAPSHOT_EVENTS, metavar="N",
                       help="snapshot a model key after N of its own events; a restore replays at most that many of "
                       f"them (default: {DEFAULT_SNAPSHOT_EVENTS})")
    group.add_argument("--snapshot-every-seconds", type=non_negative_float, default=DEFAULT_SNAPSHOT_SECONDS,
                       metavar="S", help="snapshot a changed model key at most S seconds after its first change; a "
                       f"restore re-reads at most about S seconds of a partition (default: {DEFAULT_SNAPSHOT_SECONDS:g})")
    group.add_argument("--snapshot-ring", type=positive_int, default=DEFAULT_RING, metavar="M",
                       help="keep each model key's last M snapshots, to fall back on when the newest is refused "
                       f"(default: {DEFAULT_RING})")
    group.add_argument("--max-snapshot-bytes", type=positive_int, default=DEFAULT_MAX_SNAPSHOT_BYTES, metavar="B",
                       help="a model key whose snapshot is larger is served and learns but is not checkpointed, with "
                       f"an error and an 'unsaved' decision each time it is due (default: {DEFAULT_MAX_SNAPSHOT_BYTES})")


def schedule_from_args(args: argparse.Namespace) -> SnapshotSchedule:
    """The snapshot schedule the flags describe.

    >>> p = argparse.ArgumentParser(); add_state_flags(p)
    >>> s = schedule_from_args(p.parse_args(["--snapshot-every-events", "10", "--snapshot-ring", "2"]))
    >>> s.every_events, s.every_s, s.ring
    (10, 60.0, 2)
    """
    return SnapshotSchedule(args.snapshot_every_events, args.snapshot_every_seconds, args.snapshot_ring)
