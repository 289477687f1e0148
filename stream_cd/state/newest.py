"""The newest good version of each state record, read in one pass with bounded memory.

A store hands over its records in the order they were written: ring-slot store
keys (:mod:`stream_cd.state.records`), offsets and values (None: a tombstone).
Each value is opened (its signature verified) as it comes, and only the newest
one that opens is kept per record, so a restore holds one payload per record,
however many versions the store still has. A version that does not open is
passed over for the one before it; ``older`` asks for versions before a given
offset (when the newest that opened could not be unpickled).

>>> def opener(record, offset, blob):
...     if blob.startswith(b"bad"):
...         raise StateError(f"refused {record} at {offset}")
...     return blob.upper()
>>> stream = [("s0/model:a", 0, b"a0"), ("s1/model:a", 1, b"a1"), ("s2/model:a", 2, b"bad"),
...           ("s0/partition:0", 3, b"p"), ("model:old-layout", 4, b"x")]
>>> found = newest_versions(stream, opener)
>>> sorted(found), found["model:a"]
(['model:a', 'partition:0'], Version(offset=1, slot=1, payload=b'A1', fell_back=True))
>>> newest_versions(stream, opener, older={"model:a": 1})["model:a"].payload
b'A0'

A tombstone of a slot deletes the version it held: every slot of a record is
tombstoned at once when the record is deleted.

>>> newest_versions(stream + [("s1/model:a", 5, None)], opener).get("model:a") is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from stream_cd.errors import StateError
from stream_cd.state.records import parse_store_key

__all__ = ["Version", "newest_versions", "Opener"]

Opener = Callable[[str, int, bytes], bytes]  # (record, offset, stored value) -> payload, or StateError


@dataclass(frozen=True, slots=True)
class Version:
    """The version of a record to restore: where it is, and its opened payload.
    ``fell_back``: a newer version of it did not open."""

    offset: int
    slot: int
    payload: bytes
    fell_back: bool = False


def newest_versions(stream: Iterable[tuple[str, int, bytes | None]], opener: Opener,
                    older: Mapping[str, int] | None = None) -> dict[str, Version]:
    """Per record, the newest version in ``stream`` that ``opener`` accepts (and, for the
    records of ``older``, that lies before the offset given there)."""
    found: dict[str, Version] = {}
    refused: dict[str, int] = {}  # record -> offset of the newest version that did not open
    for key, offset, value in stream:
        parsed = parse_store_key(key)
        if parsed is None:
            continue
        record, slot = parsed
        if older is not None and record in older and offset >= older[record]:
            continue
        if value is None:
            kept = found.get(record)
            if kept is not None and kept.slot == slot:
                del found[record]
            continue
        try:
            payload = opener(record, offset, value)
        except StateError:
            refused[record] = offset
            continue
        found[record] = Version(offset, slot, payload)
    return {record: Version(v.offset, v.slot, v.payload, refused.get(record, -1) > v.offset or record in (older or {}))
            for record, v in found.items()}
