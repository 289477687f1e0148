"""One model key's learning state: champion, challenger, drift detector,
comparator, triggers, served metric, versions and counts.

:meth:`ModelSlot.learn` runs progressive validation on a labeled event
(predict, score, then learn) for the champion and the challenger, and returns
the decisions that event caused.

>>> from stream_cd.config import PipelineConfig
>>> from river import datasets
>>> slot = ModelSlot("phish", PipelineConfig(model="logreg", drift="none"))
>>> for x, y in datasets.Phishing():
...     _ = slot.learn(x, y, ts=0)
>>> summary = slot.summary()
>>> summary["metric"]["name"], round(summary["metric"]["value"], 4), summary["champion_version"]
('Accuracy', 0.8928, 'v1.0')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream_cd.evaluation.paired import PairedComparator, make_comparator
from stream_cd.config import PipelineConfig
from stream_cd.decisions import Decision
from stream_cd.learning.drift import RisingLossDetector
from stream_cd.errors import InvalidEvent
from stream_cd.events import Event
from stream_cd.learning.guard import RangeGuard, SourceCap
from stream_cd.serving.sessions import LogitResidual, MeanShift, SessionStore, top_class
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.tasks import Task, check_label, infer_task, loss_of, make_metric
from stream_cd.learning.triggers import Trigger, build_triggers
from stream_cd.learning.versions import Version, VersionBook

__all__ = ["Candidate", "ModelSlot"]

_KIND_NAMES = {float: "a number", bool: "a boolean", str: "a string"}
_NUMBERS = frozenset((int, float))
_NO_DECISIONS: list[Decision] = []  # shared, never changed: most events decide nothing


class Candidate:
    """A model with its spec and version."""

    __slots__ = ("spec", "model", "_version", "label", "learned")

    def __init__(self, spec: ModelSpec, version: Version) -> None:
        self.spec = spec
        self.model = spec.build()
        self.version = version
        self.learned = 0

    @property
    def version(self) -> Version:
        return self._version

    @version.setter
    def version(self, version: Version) -> None:
        self._version = version
        self.label = str(version)  # what every outcome reports, formatted once per version

    def failure(self, doing: str, err: Exception) -> InvalidEvent:
        """The rejection of an event this model failed on: it must not stop the worker."""
        return InvalidEvent(f"model {self.spec} ({self.label}) cannot {doing} this event: {err!r}")

    def predict(self, x: dict) -> Any:
        try:
            return self.model.predict_one(x)
        except Exception as err:  # a model that cannot use this event must not stop the worker
            raise self.failure("predict", err) from None

    def predict_proba(self, x: dict) -> dict:
        try:
            return self.model.predict_proba_one(x)
        except Exception as err:
            raise self.failure("predict", err) from None


class ModelSlot:
    """Learning state of one model key."""

    _numeric: frozenset[str] = frozenset()  # features the schema knows as numbers

    def __init__(self, key: str, config: PipelineConfig) -> None:
        self.key = key
        self.config = config
        self.spec = ModelSpec.parse(config.model)
        self.shadow_spec = None if config.shadow == "none" else ModelSpec.parse(config.shadow)
        self.task: Task | None = None if config.task == "auto" else config.task  # type: ignore[assignment]
        if self.task is None and self.spec.task is not None:
            self.task = self.spec.task  # type: ignore[assignment]
        if self.task is not None:
            self._check_specs(self.task)
        self.book = VersionBook()
        self.champion = Candidate(self.spec, self.book.birth(self.spec.name, "start", 0))
        self.challenger: Candidate | None = None
        if self.shadow_spec is not None:
            self.challenger = Candidate(
                self.shadow_spec, self.book.birth(self.shadow_spec.name, "shadow", 0)
            )
        self.metric = make_metric(self.task) if self.task else None
        self.sessions: SessionStore | None = None
        self.served: tuple[Any, Any, int] | None = None  # (global, adapted, session events) of the last serve
        self.last_prediction: Any = None
        self.detector = self._new_detector()
        self.comparator: PairedComparator | None = None
        self.triggers: list[Trigger] = []
        if self.task:
            self._start_judging()
        self.source_cap = None if config.source_cap is None else SourceCap(config.source_cap, config.source_window)
        self.range_guard = None if config.range_guard is None else RangeGuard(config.range_guard, config.range_warmup)
        self.offsets: dict[int, int] = {}  # partition -> next offset this key has taken in
        self.schema: dict[str, type] = {}  # feature -> kind (float for any number, bool, str)
        self.events_seen = 0
        self.learned = 0
        self.held_back = {"source": 0, "range": 0}
        self.retrains = 0
        self.promotions = 0
        self.drops = 0
        self.resets = 0

    # -- set-up -------------------------------------------------------------

    def _check_specs(self, task: str) -> None:
        self.spec.check_task(task)
        if self.shadow_spec is not None:
            self.shadow_spec.check_task(task)

    def _new_detector(self) -> RisingLossDetector | None:
        return RisingLossDetector(self.config.drift_delta) if self.config.drift == "adwin" else None

    def _new_comparator(self) -> PairedComparator:
        c = self.config
        return make_comparator(
            self.task or "classification",
            alpha=c.alpha,
            min_sample=c.min_sample,
            window=c.window,
            every=c.compare_every,
            budget=c.drop_budget,
        )

    def _start_judging(self) -> None:
        self.metric = make_metric(self.task)  # type: ignore[arg-type]
        c = self.config
        if c.session_adaptation:
            adapter = LogitResidual if self.task == "classification" else MeanShift
            ttl = None if c.session_ttl_s is None else int(c.session_ttl_s * 1000)
            self.sessions = SessionStore(adapter, max_sessions=c.max_sessions, ttl_ms=ttl)
        self.comparator = self._new_comparator()
        self.triggers = build_triggers(self.config.triggers, self.task)  # type: ignore[arg-type]

    def _fix_task(self, y: Any) -> None:
        task = infer_task(y)
        self._check_specs(task)
        self.task = task
        self._start_judging()

    # -- serving and learning ----------------------------------------------

    @property
    def champion_version(self) -> str:
        return self.champion.label

    @property
    def challenger_version(self) -> str | None:
        return None if self.challenger is None else self.challenger.label

    def check_schema(self, x: dict, numeric: bool = False) -> None:
        """Reject an event whose feature changed kind (number, boolean, string) from earlier
        events of this key, before any model sees it: models fail on such events part-way
        through learning, which would leave them changed by an event that was rejected.

        ``numeric``: the caller knows every value in ``x`` is a number (the decoder's
        :attr:`~stream_cd.events.Event.numeric`), so only the names need looking at.
        """
        if (numeric or _NUMBERS.issuperset(map(type, x.values()))) and self._numeric.issuperset(x):
            return  # the common case, checked in C: only numbers, all known as numbers
        schema = self.schema
        new = None
        for name, value in x.items():
            kind = type(value)
            if kind is int:
                kind = float
            known = schema.get(name)
            if known is None:
                if new is None:
                    new = {}
                new[name] = kind
            elif known is not kind:
                raise InvalidEvent(
                    f"feature {name!r} is {value!r}, {_KIND_NAMES[kind]}, but earlier events of model key "
                    f"{self.key!r} had {_KIND_NAMES[known]}"
                )
        if new:
            schema.update(new)  # only once the whole event is known to fit
            self._numeric = frozenset(name for name, kind in schema.items() if kind is float)

    def _serve(self, x: dict, session: str | None, ts: int | None) -> tuple[Any, Any]:
        """The prediction served for ``x`` and the champion's own (global) prediction.

        Events of a session get the champion's prediction adapted by the session's own
        feedback; the champion's own prediction still drives drift and the comparator.
        """
        sessions = self.sessions
        if sessions is None or session is None:
            y_pred = self.last_prediction = self.champion.predict(x)
            self.served = None
            return y_pred, y_pred
        classification = self.task == "classification"
        global_pred = self.champion.predict_proba(x) if classification else self.champion.predict(x)
        adapter = sessions.get(session, ts)  # None for a new (or expired) session: it gets the global prediction
        adapted = global_pred if adapter is None else adapter.predict(x, global_pred)
        self.served = (global_pred, adapted, 0 if adapter is None else adapter.n)
        y_pred = self.last_prediction = top_class(adapted) if classification else adapted
        return y_pred, global_pred

    def predict(self, x: dict, session: str | None = None, ts: int | None = None, numeric: bool = False) -> Any:
        """Serve a prediction request: the champion's, adapted to the session if it has one."""
        self.check_schema(x, numeric)
        self.events_seen += 1
        if self.task is None:
            self.served = None
            self.last_prediction = self.champion.predict(x)
            return self.last_prediction
        return self._serve(x, session, ts)[0]

    def _held_back(self, x: dict, source: str | None) -> bool:
        if self.range_guard is not None and not self.range_guard.admit(x):
            self.held_back["range"] += 1
            return True
        if self.source_cap is not None and not self.source_cap.admit(source):  # source, else the session's user
            self.held_back["source"] += 1
            return True
        return False

    def learn(
        self, x: dict, y: Any, ts: int, source: str | None = None, session: str | None = None, numeric: bool = False
    ) -> list[Decision]:
        """Progressive validation on one labeled event; return the decisions it caused.

        An event a poisoning guard holds back is counted, and neither scored nor learned.
        Every prediction comes first, then the learning, champion first: if the champion
        cannot learn the event, neither model has changed. ``numeric`` as for
        :meth:`check_schema`.
        """
        task = self.task
        if task is None:
            self._fix_task(y)
            task = self.task
        y = check_label(task, y)  # type: ignore[arg-type]
        self.check_schema(x, numeric)
        if (self.source_cap is not None or self.range_guard is not None) and self._held_back(x, source or session):
            self.events_seen += 1
            return _NO_DECISIONS
        champion, challenger = self.champion, self.challenger
        if session is None or self.sessions is None:
            y_pred = global_pred = self.last_prediction = champion.predict(x)
            self.served = None
        else:
            y_pred, global_pred = self._serve(x, session, ts)
        # The models' own calls, without a wrapper each: this is the path of every event.
        candidate, doing = challenger, "predict"
        try:
            if challenger is not None:
                c_pred = challenger.model.predict_one(x)
            candidate, doing = champion, "learn"
            champion.model.learn_one(x, y)
            champion.learned += 1
            if challenger is not None:
                candidate = challenger
                challenger.model.learn_one(x, y)
        except Exception as err:  # a model that cannot use this event must not stop the worker
            raise candidate.failure(doing, err) from None  # type: ignore[union-attr]
        if y_pred is not None:
            self.metric.update(y, y_pred)  # type: ignore[union-attr]
        if self.served is not None:  # served to a session: the session learns, the champion is judged
            self.sessions.learn(session, x, y, global_pred, ts)  # type: ignore[union-attr]
            if task == "classification":
                global_pred = top_class(global_pred)
        self.events_seen += 1
        self.learned += 1

        if task == "classification":
            loss = 0.0 if global_pred == y else 1.0  # loss_of, inline
        else:
            loss = loss_of(task, y, global_pred)  # type: ignore[arg-type]
        decisions = _NO_DECISIONS
        if challenger is not None:
            challenger.learned += 1
            c_loss = (0.0 if c_pred == y else 1.0) if task == "classification" else loss_of(task, y, c_pred)  # type: ignore[arg-type]
            verdict = self.comparator.update(loss, c_loss)  # type: ignore[union-attr]
            if verdict is not None:
                decisions = [self._judge(verdict.action, verdict.evidence, ts)]
        detector = self.detector
        if detector is not None and detector.update(loss):
            decisions = [*decisions, self._on_drift(ts)]
        if self.triggers:
            for trigger in self.triggers:
                if trigger.observe(ts, self.learned, loss):
                    decisions = [*decisions, self._retrain(trigger.name, ts, {"trigger": trigger.name})]
        every = self.config.version_every
        if every is not None and self.learned % every == 0:
            decisions = [*decisions, self._version_checkpoint(ts)]
        return decisions

    def learn_many(
        self, events: Sequence[Event], timestamps: Sequence[int]
    ) -> list[tuple[int, str, list[Decision] | InvalidEvent]]:
        """:meth:`learn` on consecutive labeled events of this key, in turn; ``timestamps[i]``
        counts for an event without its own ``ts``. Return ``(index, champion version before
        the event, decisions or the rejection)`` of the events that decided something or were
        rejected.

        The models', metric's, comparator's and detector's methods are looked up once per
        stretch of events, and again after every decision, which may swap or replace any of
        them. Events of a session (when sessions are adapted to), guards, triggers or an
        unknown task take :meth:`learn` event by event.

        >>> from stream_cd.events import decode_event
        >>> slot = ModelSlot("k", PipelineConfig(model="logreg", drift="none", version_every=2))
        >>> events = [decode_event(b'{"x": {"f": 1.0}, "y": true}'), decode_event(b'{"x": {"f": "a"}, "y": true}'),
        ...           decode_event(b'{"x": {"f": 2.0}, "y": false}')]
        >>> [(i, version, getattr(out, "reason", None) or out[0].action) for i, version, out in slot.learn_many(events, [0, 0, 0])]
        [(1, 'v1.0', "feature 'f' is 'a', a string, but earlier events of model key 'k' had a number"), (2, 'v1.0', 'checkpoint')]
        """
        results: list[tuple[int, str, list[Decision] | InvalidEvent]] = []
        start = 0
        while start < len(events) and self.task is None:  # the first usable label fixes the task
            start = self._learn_one_of(events, timestamps, start, results)
        if self.source_cap is not None or self.range_guard is not None or self.triggers:
            for i in range(start, len(events)):
                self._learn_one_of(events, timestamps, i, results)
            return results
        while start < len(events):
            if self.sessions is not None and events[start].session is not None:
                start = self._learn_one_of(events, timestamps, start, results)  # served to its session
            else:
                start = self._learn_stretch(events, timestamps, start, results)
        return results

    def _learn_one_of(self, events: Sequence[Event], timestamps: Sequence[int], i: int, results: list) -> int:
        event, version = events[i], self.champion.label
        ts = timestamps[i] if event.ts is None else event.ts
        try:
            decisions = self.learn(event.x, event.y, ts, event.source, event.session, event.numeric)
        except InvalidEvent as err:
            results.append((i, version, err))
        else:
            if decisions:
                results.append((i, version, decisions))
        return i + 1

    def _learn_stretch(self, events: Sequence[Event], timestamps: Sequence[int], start: int, results: list) -> int:
        """Learn from ``events[start:]`` up to and including the first that decides something,
        or up to an event of a session; return the index after the last event taken."""
        task, classification = self.task, self.task == "classification"
        champion, challenger = self.champion, self.challenger
        c_predict, c_learn = champion.model.predict_one, champion.model.learn_one
        s_predict = s_learn = compare = None
        if challenger is not None:
            s_predict, s_learn = challenger.model.predict_one, challenger.model.learn_one
            compare = self.comparator.update  # type: ignore[union-attr]
        detect = None if self.detector is None else self.detector.update
        metric_update, check_schema = self.metric.update, self.check_schema  # type: ignore[union-attr]
        known_numbers = self._numeric  # features the schema knows as numbers; it grows in check_schema
        every, version = self.config.version_every, champion.label
        learned = self.learned
        n_champion = n_challenger = 0
        last_prediction, predicted = self.last_prediction, False
        sessions = self.sessions is not None
        try:
            for i in range(start, len(events)):
                event = events[i]
                if sessions and event.session is not None:
                    return i
                x, y = event.x, event.y
                if not (event.numeric and known_numbers.issuperset(x)) or type(y) is float or not classification:
                    try:  # what the two checks do on the common case above, they do here in full
                        y = check_label(task, y)  # type: ignore[arg-type]
                        check_schema(x, event.numeric)
                    except InvalidEvent as err:
                        results.append((i, version, err))
                        continue
                    known_numbers = self._numeric
                candidate, doing = champion, "predict"
                try:  # as in learn: every prediction first, then the learning, champion first
                    y_pred = last_prediction = c_predict(x)
                    predicted = True
                    if challenger is not None:
                        candidate = challenger
                        s_pred = s_predict(x)  # type: ignore[misc]
                    candidate, doing = champion, "learn"
                    c_learn(x, y)
                    n_champion += 1
                    if challenger is not None:
                        candidate = challenger
                        s_learn(x, y)  # type: ignore[misc]
                except Exception as err:  # a model that cannot use this event must not stop the worker
                    results.append((i, version, candidate.failure(doing, err)))  # type: ignore[union-attr]
                    continue
                if y_pred is not None:
                    metric_update(y, y_pred)
                learned += 1
                loss = (0.0 if y_pred == y else 1.0) if classification else loss_of(task, y, y_pred)  # type: ignore[arg-type]
                verdict = None
                if challenger is not None:
                    n_challenger += 1
                    s_loss = (0.0 if s_pred == y else 1.0) if classification else loss_of(task, y, s_pred)  # type: ignore[arg-type]
                    verdict = compare(loss, s_loss)  # type: ignore[misc]
                drifted = verdict is None and detect is not None and detect(loss)
                if verdict is None and not drifted and (every is None or learned % every):
                    continue
                # something is decided: the counts first, as learn() keeps them, then the decisions in its order
                self._count(learned, n_champion, n_challenger, last_prediction, predicted)
                learned, n_champion, n_challenger = self.learned, 0, 0
                ts = timestamps[i] if event.ts is None else event.ts
                decisions: list[Decision] = []
                if verdict is not None:
                    decisions.append(self._judge(verdict.action, verdict.evidence, ts))
                    detector = self.detector  # a promotion starts a new one, which takes this loss
                    if detector is not None and detector.update(loss):
                        decisions.append(self._on_drift(ts))
                elif drifted:
                    decisions.append(self._on_drift(ts))
                if every is not None and learned % every == 0:
                    decisions.append(self._version_checkpoint(ts))
                results.append((i, version, decisions))
                return i + 1
            return len(events)
        finally:
            self._count(learned, n_champion, n_challenger, last_prediction, predicted)

    def _count(self, learned: int, n_champion: int, n_challenger: int, last_prediction: Any, predicted: bool) -> None:
        """Bring the counts up to a stretch's own (see :meth:`_learn_stretch`). Without
        guards, every event learned is also an event seen, so the two move together."""
        self.events_seen += learned - self.learned
        self.learned = learned
        self.champion.learned += n_champion
        if self.challenger is not None:
            self.challenger.learned += n_challenger
        if predicted:  # as learn() does for every event whose champion predicted
            self.last_prediction, self.served = last_prediction, None

    # -- decisions -----------------------------------------------------------

    def _version_checkpoint(self, ts: int) -> Decision:
        """Stateful progress: bump MINOR of the champion (and challenger)."""
        self.champion.version = self.champion.version.next_minor()
        if self.challenger is not None:
            self.challenger.version = self.challenger.version.next_minor()
        evidence = {"learned": self.learned, "metric": self.metric.get(), "held_back": dict(self.held_back)}  # type: ignore[union-attr]
        return self._decision("checkpoint", "volume", ts, evidence, self.challenger_version)

    def _decision(self, action: str, trigger: str, ts: int, evidence: dict[str, Any], challenger: str | None) -> Decision:
        return Decision(
            model_key=self.key,
            action=action,
            trigger=trigger,
            champion_version=self.champion_version,
            challenger_version=challenger,
            events_seen=self.events_seen,
            evidence=evidence,
            ts=ts,
        )

    def _judge(self, action: str, evidence: dict[str, Any], ts: int) -> Decision:
        challenger = self.challenger
        assert challenger is not None
        if action == "promote":
            decision = self._decision("promote", "comparator", ts, evidence, str(challenger.version))
            self.challenger, self.champion = self.champion, challenger
            self.promotions += 1
            self.comparator = self._new_comparator()
            self.detector = self._new_detector()
            return decision
        if action == "drop":
            decision = self._decision("drop", "comparator", ts, evidence, str(challenger.version))
            self.challenger = None
            self.comparator = self._new_comparator()
            self.drops += 1
            return decision
        return self._decision("keep", "comparator", ts, evidence, str(challenger.version))

    def _drift_evidence(self) -> dict[str, Any]:
        detector = self.detector
        assert detector is not None
        return {
            "detector": "adwin",
            "delta": detector.delta,
            "recent_loss": round(detector.adwin.estimation, 6),
            "recent_width": detector.adwin.width,
        }

    def _on_drift(self, ts: int) -> Decision:
        evidence = self._drift_evidence()
        if self.config.on_drift == "reset":
            old = self.champion
            self.champion = Candidate(
                old.spec, self.book.birth(old.spec.name, "drift", self.events_seen, parent=old.version)
            )
            self.resets += 1
            self.retrains += 1
            self.detector = self._new_detector()
            self.comparator = self._new_comparator()
            evidence["replaced"] = str(old.version)
            return self._decision("reset", "drift", ts, evidence, None if self.challenger is None else self.challenger_version)
        return self._retrain("drift", ts, evidence)

    def _retrain(self, trigger: str, ts: int, evidence: dict[str, Any]) -> Decision:
        """Start a fresh model of the champion's spec as the challenger."""
        spec = self.champion.spec
        if self.challenger is not None:
            evidence = {**evidence, "replaced_challenger": self.challenger_version}
        self.challenger = Candidate(
            spec, self.book.birth(spec.name, trigger, self.events_seen, parent=self.champion.version)
        )
        self.comparator = self._new_comparator()
        self.retrains += 1
        return self._decision("retrain", trigger, ts, evidence, self.challenger_version)

    # -- reporting -----------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The per-key part of the run summary."""
        metric = self.metric
        return {
            "champion_version": self.champion_version,
            "champion_spec": self.champion.spec.name,
            "challenger_version": self.challenger_version,
            "task": self.task,
            "metric": None
            if metric is None
            else {"name": type(metric).__name__, "value": metric.get()},
            "events_seen": self.events_seen,
            "learned": self.learned,
            "held_back": dict(self.held_back),
            "retrains": self.retrains,
            "promotions": self.promotions,
            "drops": self.drops,
            "sessions": None if self.sessions is None else self.sessions.stats(),
        }
