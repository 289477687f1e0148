"""The worker's log lines: human-readable by default, JSON lines for log collectors.

The worker logs one line per decision, rebalance, restore and commit failure
(:mod:`stream_cd.worker`), each with an ``event`` name and its ``fields`` in
the record; every line carries the worker's id.

>>> import logging
>>> record = logging.LogRecord("stream_cd.worker", logging.INFO, __file__, 1, "rebalance: %s", ("assigned 0",), None)
>>> record.event, record.fields, record.created = "rebalance", {"held": [0]}, 0.0
>>> record.worker_id = "w1"
>>> JsonFormatter().format(record)
'{"ts":"1970-01-01T00:00:00.000Z","level":"info","logger":"stream_cd.worker","worker_id":"w1","event":"rebalance","message":"rebalance: assigned 0","held":[0]}'
>>> HumanFormatter().format(record)
'1970-01-01T00:00:00.000Z w1 INFO rebalance: assigned 0'
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import IO

import orjson

__all__ = ["JsonFormatter", "HumanFormatter", "WorkerIdFilter", "configure_logging", "LOG_FORMATS"]

LOG_FORMATS = ("human", "json")


def _timestamp(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WorkerIdFilter(logging.Filter):
    """Gives every record the worker's id."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker_id = self.worker_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, ``worker_id``, ``event``,
    ``message``, then the event's fields (and ``exception`` when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "worker_id": getattr(record, "worker_id", None),
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for name, value in (getattr(record, "fields", None) or {}).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


class HumanFormatter(logging.Formatter):
    """``TIME WORKER LEVEL message``."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record.created)} {getattr(record, 'worker_id', '-')} {record.levelname} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(fmt: str, worker_id: str, stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Send every log line to ``stream`` (stderr) in format ``fmt``, stream-cd's own from ``level`` up."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(WorkerIdFilter(worker_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # other libraries (kafka-python) only when something is wrong
    logging.getLogger("stream_cd").setLevel(level)
    logging.getLogger("consumers").setLevel(level)
