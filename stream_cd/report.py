"""How runs and decisions read on a terminal, and the JSON summary line.

>>> from stream_cd.decisions import Decision
>>> d = Decision("default", "retrain", "drift", "v2.0", "v3.0", 20038, {"detector": "adwin"})
>>> decision_line(d.to_dict())
'    20038  default  retrain    drift        champion v2.0  challenger v3.0'
>>> summary_json({"events": 1, "invalid": 0, "models": {}})
'{"summary":{"events":1,"invalid":0,"models":{}}}'
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["decision_line", "summary_json", "summary_table"]


def decision_line(d: dict[str, Any]) -> str:
    """One human-readable line for a decision."""
    line = (
        f"{d['events_seen']:>9}  {d['model_key']}  {d['action']:<10} {d['trigger']:<12} "
        f"champion {d['champion_version']}"
    )
    if d.get("challenger_version"):
        line += f"  challenger {d['challenger_version']}"
    p_value = (d.get("evidence") or {}).get("p_value")
    if p_value is not None:
        line += f"  p={p_value:.3g}"
    return line


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as the one JSON line a ``--json`` run ends with."""
    return orjson.dumps({"summary": summary}).decode()


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as a small plain-text table.

    >>> print(summary_table({"events": 3, "invalid": 1, "models": {"a": {
    ...     "champion_version": "v1.0", "metric": {"name": "Accuracy", "value": 0.5},
    ...     "learned": 2, "retrains": 0, "promotions": 0}}}))
    events 3, invalid 1
    key  champion  metric           learned  retrains  promotions
    a    v1.0      Accuracy 0.5000        2         0           0
    """
    rows = [("key", "champion", "metric", "learned", "retrains", "promotions")]
    for key, m in summary["models"].items():
        metric = m.get("metric")
        shown = "-" if not metric else f"{metric['name']} {metric['value']:.4f}"
        rows.append((key, m["champion_version"], shown, str(m["learned"]), str(m["retrains"]), str(m["promotions"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"events {summary['events']}, invalid {summary['invalid']}"]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2])]
        cells += [row[i].rjust(widths[i]) for i in range(3, len(row))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
