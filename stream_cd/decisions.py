"""Decisions: what the pipeline publishes on the control topic.

One JSON object per message, keyed by model key. ``decision_id`` is built from
the model key, the events of that key seen when deciding, the trigger and the
action, so the same stream gives the same ids on every run.

>>> d = Decision(model_key="shop", action="retrain", trigger="drift",
...              champion_version="v1.0", challenger_version="v2.0",
...              events_seen=20412, evidence={"detector": "adwin"}, ts=1732600000000)
>>> d.decision_id
'shop:20412:drift:retrain'
>>> Decision.from_json(d.to_json()) == d
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

__all__ = ["Decision", "ACTIONS", "TRIGGERS"]

ACTIONS = ("promote", "keep", "drop", "retrain", "reset", "checkpoint")
TRIGGERS = ("drift", "comparator", "time", "performance", "volume")


@dataclass(frozen=True)
class Decision:
    model_key: str
    action: str
    trigger: str
    champion_version: str
    challenger_version: str | None
    events_seen: int
    evidence: dict[str, Any] = field(default_factory=dict)
    ts: int | None = None
    decision_id: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger {self.trigger!r} is not one of {', '.join(TRIGGERS)}")
        if not self.decision_id:
            object.__setattr__(
                self, "decision_id", f"{self.model_key}:{self.events_seen}:{self.trigger}:{self.action}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {"decision_id": out.pop("decision_id"), **out}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Decision":
        return cls(**orjson.loads(raw))
