"""Decisions: what the pipeline publishes on the control topic.

One JSON object per message, keyed by model key. ``decision_id`` names the
event that led to the decision by its place in the events topic (partition
and offset, which Kafka never hands out twice), then the trigger and the
action. So the same stream gives the same ids on every run, a decision
repeated after a restart carries the id of its first copy, and a model key
that starts afresh can never reuse an id it had given before.

>>> d = Decision(model_key="shop", action="retrain", trigger="drift",
...              champion_version="v1.0", challenger_version="v2.0",
...              events_seen=20412, evidence={"detector": "adwin"}, ts=1732600000000,
...              position=(3, 81234))
>>> d.decision_id
'shop:3-81234:drift:retrain'
>>> Decision.from_json(d.to_json()) == d
True
>>> sorted(d.to_dict())[:4]
['action', 'arm', 'challenger_version', 'champion_version']

Without a position (an event from no partition) the id falls back to the
events of the key seen so far:

>>> Decision("k", "keep", "comparator", "v1.0", "v2.0", 500).decision_id
'k:500:comparator:keep'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

__all__ = ["Decision", "ACTIONS", "TRIGGERS"]

ACTIONS = ("promote", "keep", "drop", "retrain", "reset", "checkpoint",
           "start", "ramp", "rollback", "hold", "stop", "unsaved")
TRIGGERS = ("drift", "comparator", "time", "performance", "volume",
            "experiment", "forgetting", "srm", "error")


@dataclass(frozen=True)
class Decision:
    """One decision of one model key.

    ``arm`` names the arm the decision is about (the challenger, for a shadow
    verdict), ``experiment`` the experiment that decided (None for the shadow),
    ``traffic`` the share of units each arm served (None while only the
    champion serves). ``position`` is ``(partition, offset)`` of the deciding
    event; it makes the id and is not part of the published record.
    """

    model_key: str
    action: str
    trigger: str
    champion_version: str
    challenger_version: str | None
    events_seen: int
    evidence: dict[str, Any] = field(default_factory=dict)
    ts: int | None = None
    decision_id: str = ""
    arm: str | None = None
    experiment: str | None = None
    traffic: dict[str, float] | None = None
    position: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger {self.trigger!r} is not one of {', '.join(TRIGGERS)}")
        if not self.decision_id:
            where = self.events_seen if self.position is None else f"{self.position[0]}-{self.position[1]}"
            object.__setattr__(self, "decision_id", f"{self.model_key}:{where}:{self.trigger}:{self.action}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("position")
        return {"decision_id": out.pop("decision_id"), **out}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Decision":
        return cls(**orjson.loads(raw))
