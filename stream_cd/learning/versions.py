"""Model versions ``vMAJOR.MINOR`` and their lineage.

Every model born by a stateless retrain or a new spec takes the next MAJOR of
its model key; stateful progress (learning event by event) bumps MINOR at each
checkpoint. A promotion puts the challenger, with its own version, in the
champion's place, so the served version's MAJOR changes with it.

>>> v = Version.parse("v1.3")
>>> v, v.next_minor()
(Version('v1.3'), Version('v1.4'))
>>> book = VersionBook()
>>> book.birth(spec="logreg", trigger="start", events_seen=0)
Version('v1.0')
>>> book.birth(spec="logreg", trigger="drift", events_seen=900, parent=Version.parse("v1.0"))
Version('v2.0')
>>> book.lineage["v2.0"]
{'version': 'v2.0', 'parent': 'v1.0', 'spec': 'logreg', 'trigger': 'drift', 'events_seen': 900}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stream_cd.errors import ConfigError

__all__ = ["Version", "VersionBook"]

_PATTERN = re.compile(r"v(\d+)\.(\d+)")


@dataclass(frozen=True, order=True, slots=True)
class Version:
    major: int
    minor: int = 0

    @classmethod
    def parse(cls, text: str) -> "Version":
        match = _PATTERN.fullmatch(text)
        if not match:
            raise ConfigError(f"version {text!r} is not of the form vMAJOR.MINOR, like v2.0")
        return cls(int(match[1]), int(match[2]))

    def next_minor(self) -> "Version":
        return Version(self.major, self.minor + 1)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}"

    def __repr__(self) -> str:
        return f"Version('{self}')"


@dataclass
class VersionBook:
    """Hands out MAJOR versions for one model key and keeps their lineage."""

    last_major: int = 0
    lineage: dict[str, dict[str, Any]] = field(default_factory=dict)

    def birth(self, spec: str, trigger: str, events_seen: int, parent: Version | None = None) -> Version:
        """Version a newly built model and record where it came from."""
        self.last_major += 1
        version = Version(self.last_major, 0)
        self.lineage[str(version)] = {
            "version": str(version),
            "parent": None if parent is None else str(parent),
            "spec": spec,
            "trigger": trigger,
            "events_seen": events_seen,
        }
        return version
