"""stream-cd: streaming online learning for the continuous deployment of ML models.

The core is pure Python on decoded events and never imports Kafka; the
Kafka-facing processes live in ``consumers`` and ``producers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stream_cd.config import PipelineConfig
from stream_cd.decisions import Decision
from stream_cd.errors import ConfigError, InvalidEvent, StreamCDError
from stream_cd.events import Event, decode_event
from stream_cd.pipeline import Pipeline
from stream_cd.learning.triggers import TriggerSettings

__all__ = [
    "ConfigError",
    "Decision",
    "Event",
    "InvalidEvent",
    "Pipeline",
    "PipelineConfig",
    "StreamCDError",
    "TriggerSettings",
    "decode_event",
    "subscribe_decisions",
]

__version__ = "0.1.0"


def subscribe_decisions(bootstrap: str, topic: str = "stream-cd.decisions", **options: Any) -> Iterator[dict[str, Any]]:
    """Iterate over decisions on the control topic (see ``consumers.subscribe.subscribe_decisions``).

    Options: ``from_beginning``, ``follow``, ``max_decisions``, ``key``. Kafka is
    imported only when this is called.
    """
    from consumers.subscribe import subscribe_decisions as subscribe

    return subscribe(bootstrap, topic, **options)
