"""``stream-cd checkpoints``: list the model state stored in the checkpoint topic."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import orjson

from stream_cd.cli.options import add_kafka_flags, kafka_options
from stream_cd.errors import StateError
from stream_cd.state.records import model_key_of_record, parse_store_key
from stream_cd.state.signing import STATE_KEY_ENV, StateKeys, load_state, signed_by, state_key_from_env
from stream_cd.transport import Topics

__all__ = ["register", "describe_checkpoint"]


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "checkpoints",
        help="list stored model checkpoints",
        description="List the newest checkpoint of each model key in <prefix>.checkpoints: model key, version, "
        f"events seen, source offsets, size, when it was written, and which of the keys in {STATE_KEY_ENV} "
        f"signed it (1 = the first, newest: while rotating keys, the old key can be dropped once every row says "
        f"1). Version, events, offsets and the signing key need {STATE_KEY_ENV} (a checkpoint is verified "
        f"before it is read).",
    )
    add_kafka_flags(p)
    p.add_argument("--topic-prefix", default="stream-cd", metavar="P", help="checkpoints are in P.checkpoints (default: stream-cd)")
    p.add_argument("--key", metavar="K", help="only model key K")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(run=_checkpoints)


def describe_checkpoint(key: str, record: Any, state_key: StateKeys | None) -> dict[str, Any]:
    """What a listing shows of one checkpoint record (``key`` is its store key); ``signed_by``
    is the position (1 = newest) of the key in ``state_key`` that signed it."""
    model_key = model_key_of_record(key)
    row: dict[str, Any] = {
        "key": key if model_key is None else model_key,
        "checkpoint_offset": record.offset,
        "size": len(record.value or b""),
        "created": dt.datetime.fromtimestamp(record.timestamp / 1000, dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if state_key is None:
        return row
    try:
        what = f"{key if model_key is None else repr(model_key)} at checkpoint offset {record.offset}"
        state = load_state(record.value, state_key, f"checkpoint {what}", key)
    except StateError as err:
        row["refused"] = str(err)
        return row
    row["signed_by"] = signed_by(record.value, state_key, key.encode())
    if hasattr(state, "champion_version"):
        row.update(version=state.champion_version, events_seen=state.events_seen, offsets=state.offsets)
    else:
        row.update(events_seen=state.events, offsets={"next": state.next_offset})
    return row


def _checkpoints(args: argparse.Namespace) -> int:
    from consumers.checkpoints import committed_records

    state_key = state_key_from_env(required=False)
    newest: dict[str, Any] = {}
    slots: dict[str, int] = {}
    for record in committed_records(args.bootstrap, Topics(args.topic_prefix).checkpoints,
                                    client_options=kafka_options(args)):
        parsed = parse_store_key(record.key.decode() if record.key else "")
        if parsed is None:
            continue  # a checkpoint of another layout, which workers do not read
        key, slot = parsed
        if args.key is not None and model_key_of_record(key) != args.key:
            continue
        if record.value is None:
            if slots.get(key) == slot:
                newest.pop(key, None)
        else:
            newest[key], slots[key] = record, slot
    rows = [describe_checkpoint(key, newest[key], state_key) for key in sorted(newest)]
    if args.json:
        for row in rows:
            print(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS).decode())
        return 0
    if state_key is None:
        print(f"({STATE_KEY_ENV} is not set: versions, events and offsets are not shown)")
    print(f"{'key':<24} {'version':<8} {'events':>9} {'offsets':<16} {'bytes':>9}  {'signed':<6}  created")
    for row in rows:
        offsets = ",".join(f"{p}:{o}" for p, o in (row.get("offsets") or {}).items())
        version = row.get("version", "REFUSED" if "refused" in row else "-")
        signed = f"key {row['signed_by']}" if "signed_by" in row else "-"
        print(f"{row['key']:<24} {version:<8} {row.get('events_seen', '-'):>9} {offsets:<16} {row['size']:>9}  "
              f"{signed:<6}  {row['created']}")
    if not rows:
        print("no checkpoints")
    return 0
