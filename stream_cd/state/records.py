"""How state records are named in the store.

Two kinds of record: a model key's snapshot (``model:<key>``) and a source
partition's record (``partition:<n>``). Each is stored under a few ring slots
(``s<i>/<record>``), written in turn, so that a compacted store, which keeps only
the newest value of each store key, still holds the last few versions of every
record to fall back on.

>>> record_key("shop"), record_key("partition:0"), record_key(partition=3)
('model:shop', 'model:partition:0', 'partition:3')
>>> model_key_of_record("model:partition:0"), model_key_of_record("partition:0")
('partition:0', None)
>>> store_key("model:shop/eu", 2)
's2/model:shop/eu'
>>> parse_store_key("s2/model:shop/eu"), parse_store_key("model:shop"), parse_store_key("s/x")
(('model:shop/eu', 2), None, None)
"""

from __future__ import annotations

__all__ = ["record_key", "model_key_of_record", "partition_of_record", "store_key", "parse_store_key"]

_MODEL_PREFIX = "model:"
_PARTITION_PREFIX = "partition:"


def record_key(model_key: str | None = None, partition: int | None = None) -> str:
    """The record of a model key, or of a partition; the two namespaces never meet,
    whatever a model key is called."""
    return f"{_MODEL_PREFIX}{model_key}" if partition is None else f"{_PARTITION_PREFIX}{partition}"


def model_key_of_record(key: str) -> str | None:
    """The model key a record names, or None for a partition record."""
    return key[len(_MODEL_PREFIX) :] if key.startswith(_MODEL_PREFIX) else None


def partition_of_record(key: str) -> int | None:
    """The partition a partition record names, or None.

    >>> partition_of_record("partition:3"), partition_of_record("model:partition:3")
    (3, None)
    """
    if not key.startswith(_PARTITION_PREFIX):
        return None
    tail = key[len(_PARTITION_PREFIX) :]
    return int(tail) if tail.isdigit() else None


def store_key(record: str, slot: int) -> str:
    """The store key of ``record``'s ring slot ``slot``."""
    return f"s{slot}/{record}"


def parse_store_key(key: str) -> tuple[str, int] | None:
    """``(record, slot)`` of a store key, or None for a key of another layout (a
    checkpoint from before ring slots, which is not read)."""
    head, sep, record = key.partition("/")
    if not sep or len(head) < 2 or head[0] != "s" or not head[1:].isdigit() or not record:
        return None
    return record, int(head[1:])
