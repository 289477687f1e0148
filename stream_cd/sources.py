"""Recorded event streams on disk: JSONL lines as they are, CSV rows as events.

A JSONL line is passed on byte for byte, so an invalid line reaches the
worker and its dead-letter topic instead of vanishing at replay. A CSV file
has a header; the columns ``key``, ``id``, ``ts``, ``session``, ``source`` and
the label column (``y`` unless named) are event fields, every other column a
feature. Numbers become numbers, ``true``/``false`` booleans, an empty cell
is a missing feature.

>>> import io
>>> rows = io.StringIO("key,age,colour,y\\nshop,31,red,true\\nshop,,blue,false\\n")
>>> [e.decode() for e in csv_events(rows)]
['{"key":"shop","x":{"age":31,"colour":"red"},"y":true}', '{"key":"shop","x":{"colour":"blue"},"y":false}']
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from stream_cd.errors import ConfigError

__all__ = ["read_events", "csv_events", "jsonl_events", "paced"]

_FIELDS = ("key", "id", "ts", "session", "source")


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _whole(text: str) -> int | str:
    """A whole number, or the text itself so that validation rejects it with its value."""
    try:
        return int(text)
    except ValueError:
        return text


def csv_events(handle: IO[str], label: str = "y") -> Iterator[bytes]:
    """Yield each CSV row as the JSON bytes of an event."""
    for row in csv.DictReader(handle):
        event: dict[str, Any] = {}
        x: dict[str, Any] = {}
        y = None
        for column, cell in row.items():
            if cell is None or cell == "":
                continue
            if column == label:
                y = _scalar(cell)
            elif column in _FIELDS:
                event[column] = _whole(cell) if column == "ts" else cell
            else:
                x[column] = _scalar(cell)
        event["x"] = x
        if y is not None:
            event["y"] = y
        yield orjson.dumps(event)


def jsonl_events(handle: IO[bytes]) -> Iterator[bytes]:
    """Yield each non-blank line of a JSONL file as it is (without the newline)."""
    for line in handle:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def paced(events: Iterable[bytes], rate: float | None) -> Iterator[bytes]:
    """Yield ``events`` at about ``rate`` per second (as fast as they come when None)."""
    if not rate:
        yield from events
        return
    start = time.monotonic()
    for i, raw in enumerate(events):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield raw


def read_events(path: str | Path, label: str = "y") -> Iterator[bytes]:
    """Yield the events of a ``.jsonl`` or ``.csv`` file (``-`` reads JSONL from stdin)."""
    import sys

    if str(path) == "-":
        yield from jsonl_events(sys.stdin.buffer)
        return
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; give a .jsonl or .csv file of events")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            yield from csv_events(handle, label)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with path.open("rb") as handle:
            yield from jsonl_events(handle)
    else:
        raise ConfigError(f"{path}: unknown file type {suffix!r}; use .jsonl (one JSON event a line) or .csv")
