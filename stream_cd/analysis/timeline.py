"""A run's decisions as timelines: what the HTML report draws and tabulates.

It reads what ``replay --json``, ``worker --json`` and ``decisions`` print (one
JSON decision a line, and the summary line, if any, at the end). Per model key
it gathers the rolling metric of every model over the stream (a model is a
MAJOR version: the first champion, a shadow, each retrain), the marks (drift
alarms, retrains, promotions, rollbacks, canary steps, drops) and the
experiments (each challenger's shadow test, from its birth to its verdict).

>>> lines = [
...   '{"decision_id": "k:0-99:drift:retrain", "model_key": "k", "action": "retrain", "trigger": "drift",'
...   ' "champion_version": "v1.0", "challenger_version": "v2.0", "events_seen": 100, "evidence": {"rolling":'
...   ' {"metric": "Accuracy", "window": 50, "arms": {"champion": {"version": "v1.0", "value": 0.6}}}}}',
...   '{"decision_id": "k:0-199:comparator:promote", "model_key": "k", "action": "promote", "trigger": "comparator",'
...   ' "champion_version": "v1.1", "challenger_version": "v2.1", "events_seen": 200, "evidence": {"pairs": 100,'
...   ' "p_value": 0.001, "rolling": {"metric": "Accuracy", "window": 50, "arms": {'
...   '"champion": {"version": "v1.1", "value": 0.55}, "challenger": {"version": "v2.1", "value": 0.8}}}}}',
...   '{"summary": {"events": 200}}']
>>> run = read_run(lines)
>>> key = run.keys["k"]
>>> [(m.kind, m.at) for m in key.marks]
[('drift', 100), ('promotion', 200)]
>>> {major: points for major, points in key.series.items()}
{1: [(100, 0.6), (200, 0.55)], 2: [(200, 0.8)]}
>>> [(e.challenger, e.outcome, e.pairs) for e in key.experiments]
[('v2', 'promoted', 100)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_cd.errors import ConfigError

__all__ = ["Run", "KeyTimeline", "Mark", "Experiment", "read_run", "read_run_file", "major"]

MARK_KINDS = ("drift", "retrain", "promotion", "rollback", "canary", "drop", "reset", "experiment")


def major(version: str | None) -> int | None:
    """The MAJOR of ``vMAJOR.MINOR`` (None for no version).

    >>> major("v12.3"), major(None)
    (12, None)
    """
    if not version:
        return None
    return int(version.lstrip("v").split(".")[0])


@dataclass(frozen=True)
class Mark:
    """Something that happened to a model key at ``at`` (events seen): one of :data:`MARK_KINDS`."""

    kind: str
    at: int
    text: str


@dataclass
class Experiment:
    """One challenger's test: from its birth to its verdict (``running`` while it has none)."""

    name: str
    challenger: str  # vMAJOR
    spec: str | None
    born: int
    trigger: str
    outcome: str = "running"
    ended: int | None = None
    pairs: int | None = None
    p_value: float | None = None
    p_value_worse: float | None = None
    ci: list[float] | None = None
    traffic: dict[str, float] | None = None


@dataclass
class KeyTimeline:
    """Everything the report shows of one model key."""

    key: str
    metric: str = "Accuracy"
    window: int | None = None
    series: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # MAJOR -> (events seen, value)
    served: list[tuple[int, float]] = field(default_factory=list)  # the champion's value at each decision
    specs: dict[int, str] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Run:
    """The decisions of a run, by model key, and its summary (None if the input had none)."""

    keys: dict[str, KeyTimeline]
    summary: dict[str, Any] | None
    skipped_lines: int = 0


def read_run_file(path: str | Path) -> Run:
    """:func:`read_run` of a file; a clear error when it is missing or holds no decision."""
    try:
        with open(path, "rb") as handle:
            run = read_run(handle)
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    if not run.keys:
        raise ConfigError(f"{path} holds no decisions: give what `replay --json`, `worker --json` or `decisions` printed")
    return run


def read_run(lines: Iterable[bytes | str]) -> Run:
    """Timelines of the decisions among ``lines``; lines that are not JSON objects are counted and skipped."""
    keys: dict[str, KeyTimeline] = {}
    summary = None
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            skipped += 1
            continue
        if not isinstance(obj, dict):
            skipped += 1
        elif "summary" in obj:
            summary = obj["summary"]
        elif "decision_id" in obj and "model_key" in obj:
            key = keys.get(obj["model_key"])
            if key is None:
                key = keys[obj["model_key"]] = KeyTimeline(obj["model_key"])
            _take(key, obj)
        else:
            skipped += 1
    for key in keys.values():
        for points in key.series.values():
            points.sort()
    return Run(keys, summary, skipped)


def _take(key: KeyTimeline, d: dict[str, Any]) -> None:
    key.decisions.append(d)
    at = int(d.get("events_seen") or 0)
    evidence = d.get("evidence") or {}
    rolling = evidence.get("rolling")
    champion = d.get("champion_version")
    if rolling:
        key.metric, key.window = rolling.get("metric", key.metric), rolling.get("window")
        for arm, state in (rolling.get("arms") or {}).items():
            m = major(state.get("version"))
            if m is None:
                continue
            if state.get("spec"):
                key.specs.setdefault(m, state["spec"])
            if state.get("value") is not None:
                key.series.setdefault(m, []).append((at, float(state["value"])))
                if arm == "champion":
                    key.served.append((at, float(state["value"])))
        winner = (rolling.get("arms") or {}).get(d.get("arm") or "challenger") if d["action"] == "promote" else None
        if winner and winner.get("value") is not None:
            key.served.append((at, float(winner["value"])))  # from here on the winner serves
    if not key.experiments and d.get("challenger_version") and d["action"] != "retrain" and not d.get("experiment"):
        first = major(d["challenger_version"])  # the shadow of the start, born with the key
        key.experiments.append(Experiment("shadow", f"v{first}", key.specs.get(first or 0), 0, "shadow"))
    _mark(key, d, at, champion, evidence)


def _mark(key: KeyTimeline, d: dict[str, Any], at: int, champion: str | None, evidence: dict[str, Any]) -> None:
    action, trigger = d["action"], d["trigger"]
    challenger = d.get("challenger_version")
    if d.get("experiment"):
        _experiment_mark(key, d, at, evidence)
        return
    if action in ("retrain", "reset"):
        kind = "drift" if trigger == "drift" else ("reset" if action == "reset" else "retrain")
        what = "drift alarm" if trigger == "drift" else f"{trigger} trigger"
        key.marks.append(Mark(kind, at, f"{what}: {action} as v{major(challenger) if action == 'retrain' else major(champion)}"))
        if action == "retrain" and challenger:
            m = major(challenger)
            key.experiments.append(Experiment(d.get("experiment") or "shadow", f"v{m}", key.specs.get(m or 0), at, trigger))
    elif action == "promote":
        rollback = (major(challenger) or 0) < (major(champion) or 0)
        text = (f"rollback: v{major(challenger)} (an earlier champion) serves again" if rollback
                else f"promotion: v{major(challenger)} serves")
        key.marks.append(Mark("rollback" if rollback else "promotion", at, text))
        _verdict(key, challenger, "promoted", at, evidence, d)
    elif action == "rollback":
        key.marks.append(Mark("rollback", at, f"rollback to {champion}"))
        _verdict(key, challenger, "rolled back", at, evidence, d)
    elif action == "ramp":
        key.marks.append(Mark("canary", at, f"canary step: traffic {d.get('traffic')}"))
    elif action == "drop":
        key.marks.append(Mark("drop", at, f"drop: v{major(challenger)} ({evidence.get('reason', trigger)})"))
        _verdict(key, challenger, "dropped", at, evidence, d)
    elif action == "keep":
        _verdict(key, challenger, None, at, evidence, d)


def _experiment_mark(key: KeyTimeline, d: dict[str, Any], at: int, evidence: dict[str, Any]) -> None:
    """A decision of an A/B/n test or a canary: its start, steps and end, matched by its name."""
    name, action, arm = d["experiment"], d["action"], d.get("arm")
    if action == "start":
        arms = evidence.get("arms") or {}
        key.experiments.append(Experiment(name, ", ".join(f"{a} {v}" for a, v in arms.items()) or "-", None, at,
                                          "experiment", traffic=d.get("traffic")))
        key.marks.append(Mark("experiment", at, f"experiment {name} starts: traffic {_shares(d.get('traffic'))}"))
        return
    running = [x for x in key.experiments if x.name == name and x.outcome == "running"]
    exp = running[-1] if running else None
    if exp is not None:
        exp.traffic = d.get("traffic") or exp.traffic
    outcome = {"promote": f"promoted {arm}", "rollback": "rolled back", "drop": f"dropped {arm or ''}".strip(),
               "stop": "stopped", "hold": f"held ({d['trigger']})"}.get(action)
    if action == "promote":
        key.marks.append(Mark("promotion", at, f"promotion: arm {arm} ({d.get('challenger_version')}) of {name} serves"))
    elif action == "rollback":
        key.marks.append(Mark("rollback", at, f"rollback: {name} ended, the champion serves all"))
    elif action == "ramp":
        key.marks.append(Mark("canary", at, f"canary step of {name}: traffic {_shares(d.get('traffic'))}"))
    elif action in ("stop", "hold", "drop"):
        key.marks.append(Mark("experiment", at, f"experiment {name}: {outcome}"))
    if exp is not None and outcome is not None:
        exp.outcome, exp.ended = outcome, at


def _shares(traffic: dict[str, float] | None) -> str:
    return ", ".join(f"{arm} {share:.0%}" for arm, share in (traffic or {}).items()) or "-"


def _verdict(key: KeyTimeline, challenger: str | None, outcome: str | None, at: int, evidence: dict[str, Any], d: dict) -> None:
    """Note the test's evidence on the running experiment of ``challenger`` (and its end)."""
    m = major(challenger)
    for exp in reversed(key.experiments):
        if exp.challenger == f"v{m}" and exp.outcome == "running":
            break
    else:
        exp = Experiment(d.get("experiment") or "shadow", f"v{m}", key.specs.get(m or 0), 0, "shadow")
        key.experiments.append(exp)
    exp.spec = exp.spec or key.specs.get(m or 0)
    exp.pairs = evidence.get("pairs", exp.pairs)
    exp.p_value = evidence.get("p_value", exp.p_value)
    exp.p_value_worse = evidence.get("p_value_worse", exp.p_value_worse)
    exp.ci = evidence.get("ci", exp.ci)
    exp.traffic = d.get("traffic") or {"champion": 1.0, "challenger": 0.0}
    if outcome is not None:
        exp.outcome, exp.ended = outcome, at
