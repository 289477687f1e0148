"""Why a message was invalid, as one of a few classes: a label value Prometheus can bear.

A dead letter's reason names values (a feature, a request id, a size); as a
label that would make one series per bad message. The class keeps the kind.

>>> reason_class("not valid JSON: unexpected character: line 1 column 1 (char 0)")
'not_json'
>>> reason_class("feature 'age' is 31, a number, but earlier events of model key 'shop' had a string")
'schema_change'
>>> reason_class("feedback for request 'r9': no such request is waiting for feedback (never served here, or its id is wrong)")
'feedback_unknown'
>>> reason_class("something new")
'other'
>>> len(REASON_CLASSES) <= 16
True
"""

from __future__ import annotations

import re

__all__ = ["reason_class", "REASON_CLASSES"]

# First match wins; the texts are those of stream_cd.events, learning/, serving/.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("too_large", r"^event is \d+ bytes, over the limit"),
        ("no_value", r"^message has no value"),
        ("not_json", r"^not valid JSON"),
        ("not_object", r"^event is .*; it must be a JSON object"),
        ("missing_features", r"^x is missing"),
        ("schema_change", r"^feature .* but earlier events of model key"),
        ("bad_features", r"^(x is |feature )"),
        ("bad_label", r"^label y is "),
        ("feedback_without_id", r"^feedback \(y without x\) needs the id"),
        ("feedback_unknown", r"^feedback for request .*no such request"),
        ("feedback_expired", r"^feedback for request .*expired"),
        ("feedback_repeated", r"^feedback for request .*came again"),
        ("duplicate_request", r"^request id .* is already waiting"),
        ("model_error", r"^arm .* cannot (predict|learn) this event"),
        ("bad_field", r"^\w+ is .*; it must be"),
    )
)
REASON_CLASSES: tuple[str, ...] = (*(name for name, _ in _RULES), "other")


def reason_class(reason: str) -> str:
    """The class of a dead letter's reason (``other`` for a text no rule knows)."""
    for name, pattern in _RULES:
        if pattern.search(reason):
            return name
    return "other"
