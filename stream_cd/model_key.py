"""One model key: its arms, router, exposures, sessions and policy, with two verbs.

:meth:`ModelKey.serve` answers a request: the router's serving arm (the
champion) predicts, adapted to the request's session when it has one, every
scoring arm leaves its output among the exposures, and the prediction is
served. :meth:`ModelKey.feedback` joins a label to its request: each arm that
scored the request is scored on the output it gave then, then learns from the
request's features and the label, and the policy turns the scores into
decisions. A labeled event with features is a request and its own feedback at
once (:meth:`ModelKey.learn`); it goes through the same two steps without
waiting among the exposures. There is one per-event path, and nothing else
learns.

Exactness: on labeled events this is River's progressive validation (predict,
score, then learn); with the labels arriving later it is
``river.evaluate.progressive_val_score(..., delay=...)``, since every output is
scored as it was served.

>>> from stream_cd.config import PipelineConfig
>>> from river import datasets
>>> key = ModelKey("phish", PipelineConfig(model="logreg", drift="none"))
>>> for x, y in datasets.Phishing():
...     _ = key.learn(x, y, ts=0)
>>> summary = key.summary()
>>> summary["metric"]["name"], round(summary["metric"]["value"], 4), summary["champion_version"]
('Accuracy', 0.8928, 'v1.0')

A request, then its feedback:

>>> served, _ = key.serve({"is_popular": 1.0, "empty_server_form_handler": 0.0}, ts=5, ident="r1")
>>> served.served, key.exposures.stats()["pending"]
(True, 1)
>>> key.feedback("r1", True, ts=9)
[]
>>> key.exposures.stats()["joined"], key.learned
(1, 1251)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stream_cd.config import PipelineConfig
from stream_cd.decisions import Decision
from stream_cd.errors import InvalidEvent
from stream_cd.evaluation.experiments import RunningExperiment
from stream_cd.evaluation.forgetting import ReferenceSample
from stream_cd.evaluation.policy import NO_DECISIONS, Policy
from stream_cd.learning.arms import Arm
from stream_cd.learning.guard import RangeGuard, SourceCap
from stream_cd.learning.schema import Schema
from stream_cd.learning.specs import ModelSpec
from stream_cd.learning.tasks import Task, check_label, infer_task, loss_of, make_metric
from stream_cd.learning.versions import VersionBook
from stream_cd.key_experiments import KeyExperiments
from stream_cd.key_report import KeyReport
from stream_cd.key_roles import CHALLENGER, CHAMPION, KeyRoles
from stream_cd.serving.exposures import NO_OUTPUT, Exposure, ExposureStore
from stream_cd.serving.ranking import Rankings
from stream_cd.serving.router import ShadowRouter
from stream_cd.serving.sessions import LogitResidual, MeanShift, SessionStore, adapted_prediction, top_class

if TYPE_CHECKING:
    from stream_cd.events import RankingRequest

__all__ = ["ModelKey"]

class ModelKey(KeyRoles, KeyExperiments, KeyReport):
    """Everything one model key holds (see the module docstring)."""

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
        self.schema = Schema(key)
        self.book = VersionBook()
        self.window = config.triggers.performance_window  # events in each arm's rolling metric
        self.champion = Arm(CHAMPION, self.spec, self.book.birth(self.spec.name, "start", 0), self.window)
        self.challenger: Arm | None = None
        if self.shadow_spec is not None:
            self.challenger = Arm(CHALLENGER, self.shadow_spec, self.book.birth(self.shadow_spec.name, "shadow", 0),
                                  self.window)
        self.router = ShadowRouter()
        self.running: RunningExperiment | None = None
        self.last_experiment: dict[str, Any] | None = None  # how the last experiment ended
        self.reference = None if config.forgetting == "off" else ReferenceSample(config.reference_size, key)
        self._scoring: tuple[Arm, ...] = ()
        self._learners: tuple[Arm, ...] = ()
        self._route()
        ttl = None if config.feedback_ttl_s is None else int(config.feedback_ttl_s * 1000)
        self.exposures = ExposureStore(config.max_pending, ttl)
        self.metric = None
        self.sessions: SessionStore | None = None
        self.policy: Policy | None = None
        if self.task:
            self._start_judging()
        self.source_cap = None if config.source_cap is None else SourceCap(config.source_cap, config.source_window)
        self.range_guard = None if config.range_guard is None else RangeGuard(config.range_guard, config.range_warmup)
        self.offsets: dict[int, int] = {}  # partition -> next offset this key has taken in
        self.position: tuple[int, int] | None = None  # (partition, offset) of the event being handled
        self._ids_at: tuple[Any, list[str]] = (None, [])  # decision ids given at the current position
        self.events_seen = 0
        self.learned = 0
        self.held_back = {"source": 0, "range": 0}
        self.last_served: Exposure | None = None
        self.ranking: Rankings | None = None  # set once the key serves ranking requests (stream_cd.serving.ranking)

    # -- set-up -------------------------------------------------------------------

    def _check_specs(self, task: str) -> None:
        self.spec.check_task(task)
        if self.shadow_spec is not None:
            self.shadow_spec.check_task(task)

    def _start_judging(self) -> None:
        c = self.config
        self.metric = make_metric(self.task)  # type: ignore[arg-type]
        if c.session_adaptation:
            adapter = LogitResidual if self.task == "classification" else MeanShift
            ttl = None if c.session_ttl_s is None else int(c.session_ttl_s * 1000)
            self.sessions = SessionStore(adapter, max_sessions=c.max_sessions, ttl_ms=ttl)
        self.policy = Policy(self.task, c)  # type: ignore[arg-type]
        if self.challenger is not None:
            self.policy.new_experiment()

    def _fix_task(self, y: Any) -> None:
        task = infer_task(y)
        self._check_specs(task)
        self.task = task
        self._start_judging()
        self._route()

    def _route(self) -> None:
        """The arms that score every request, the serving arm first; again after every change of arms."""
        others = [] if self.challenger is None else [self.challenger]
        self._scoring = self.router.scoring(self.champion, others)
        self._learners = self._scoring + (() if self.running is None else tuple(self.running.arms.values()))
        # a session's adapter corrects the champion's probabilities: a model without them is served as is
        self._adapts = self.task != "classification" or hasattr(self.champion.model, "predict_proba_one")

    # -- the two verbs --------------------------------------------------------------

    def serve(self, x: dict, ts: int, ident: str | None = None, session: str | None = None,
              source: str | None = None, numeric: bool = False,
              ranking: RankingRequest | None = None) -> tuple[Exposure, list[Decision]]:
        """Answer a request; hold its exposure until the feedback for ``ident`` comes.

        Return the exposure (``served`` is the prediction, or the ranked item ids of a
        ``ranking`` request) and the decisions that arose meanwhile: requests that expired
        are learned with the configured default label, if there is one, and arms that
        failed on the request are dropped.
        """
        rankings = self.ranking
        if rankings is None and ranking is not None:
            rankings = self.ranking = Rankings(self)
        if rankings is None:
            self.schema.check(x, numeric)
        else:
            rankings.check(ranking)
        exposures = self.exposures
        if ident is not None:
            exposures.check_new(ident)
        self.events_seen += 1
        exposure = self._score(x, ts, session, source, ident) if rankings is None else rankings.score(
            self, ranking, ts, ident)  # type: ignore[arg-type]
        decisions = self._aftermath(NO_DECISIONS, ts)
        if ident is not None:
            expired = exposures.add(ident, exposure)
            if expired:
                decisions = [*decisions, *self._expired(expired)]
        return exposure, decisions

    def probe(self, x: dict, session: str | None = None, ts: int | None = None) -> Exposure:
        """How the champion would serve a request for ``x`` now, changing nothing."""
        last, failed = self.last_served, self._failed
        try:  # the champion's answer: routing would count the unit in a running experiment
            return self._score(x, ts, session, None, routed=False)  # type: ignore[arg-type]
        finally:
            self.last_served, self._failed = last, failed

    def predict(self, x: dict, session: str | None = None, ts: int | None = None) -> Any:
        """What a request for ``x`` would be served now, changing nothing."""
        return self.probe(x, session, ts).served

    def feedback(self, ident: str, y: Any, ts: int) -> list[Decision]:
        """Join the label ``y`` (or, on a ranking key, the clicked item ids) to the request ``ident``
        and learn from it."""
        self.events_seen += 1
        if self.ranking is not None:
            return self.ranking.feedback(self, ident, y, ts)
        if type(y) is tuple:
            raise InvalidEvent(f"clicks for request {ident!r}, but model key {self.key!r} does not rank: its "
                               "feedback is a label y")
        self.exposures.waiting(ident, ts)  # raises for an unknown, expired or answered id
        y = self._checked_label(y)  # a label of the wrong kind is refused before the request is answered
        decisions = self._learn_checked(self.exposures.take(ident, ts), y, ts)
        expired = self.exposures.expire_due(ts)
        if expired:
            decisions = [*decisions, *self._expired(expired)]
        return decisions

    def learn(self, x: dict, y: Any, ts: int, source: str | None = None, session: str | None = None,
              numeric: bool = False, ident: str | None = None) -> list[Decision]:
        """A labeled event: a request and its own feedback at once."""
        if self.ranking is not None:
            self.ranking.check(None)  # refused: a ranking key learns from clicks
        y = self._checked_label(y)
        self.schema.check(x, numeric)
        self.events_seen += 1
        if (self.source_cap is not None or self.range_guard is not None) and self._held_back(x, source or session):
            return NO_DECISIONS
        return self._resolved(self._score(x, ts, session, source, ident), y, ts)

    # -- the per-event path: score, then resolve -------------------------------------

    _failed: list = []  # (arm, reason) of challengers that failed on the event; shared empty list

    def _score(self, x: dict, ts: int, session: str | None, source: str | None, ident: str | None = None,
               routed: bool = True) -> Exposure:
        """Every scoring arm's output for ``x``; the champion's (adapted to the session) is served,
        unless an experiment routes the request to another arm.

        The champion failing rejects the request and changes nothing; a challenger
        failing is noted in ``_failed`` and left out."""
        if routed and self.running is not None:
            return self._score_routed(x, ts, session, source, ident)
        arms = self._scoring
        champion = arms[0]
        sessions = self.sessions
        raw = adapted = None
        try:
            if sessions is None or session is None or not self._adapts:
                served = own = champion.model.predict_one(x)
            else:
                classification = self.task == "classification"
                raw = champion.model.predict_proba_one(x) if classification else champion.model.predict_one(x)
                adapter = sessions.get(session, ts)  # None for a new (or expired) session: it gets the global prediction
                value = raw if adapter is None else adapted_prediction(adapter, x, raw)
                adapted = (value, 0 if adapter is None else adapter.n)
                served, own = (top_class(value), top_class(raw)) if classification else (value, raw)
        except Exception as err:  # a model that cannot use this event must not stop the worker
            raise champion.failure("predict", err) from None
        if len(arms) == 1:
            outputs: tuple = ((champion, own),)
        else:
            scored = [(champion, own)]
            for arm in arms[1:]:
                try:
                    scored.append((arm, arm.model.predict_one(x)))
                except Exception as err:
                    self._note_failure(arm, arm.failure("predict", err))
            outputs = tuple(scored)
        exposure = self.last_served = Exposure(x, ts, outputs, served, session, raw, adapted, source)
        return exposure

    def _resolve(self, exposure: Exposure, y: Any, ts: int) -> list[Decision]:
        """Score each arm on its output at request time, let it learn, and judge.

        The champion learns first; if it cannot, the event is rejected and no other arm
        has learned it. A challenger that cannot learn it is dropped afterwards."""
        x, outputs = exposure.x, exposure.outputs
        champion, challenger = self.champion, self.challenger
        own = c_out = NO_OUTPUT
        if self.running is not None or exposure.routed is not None:
            own, c_out = self._learn_routed(exposure, y)
            outputs = ()  # learned
        for arm, out in outputs:  # the champion first, if it scored the request (it may have changed since)
            if arm is champion:
                own = out
                try:
                    champion.model.learn_one(x, y)
                except Exception as err:
                    raise champion.failure("learn", err) from None
                champion.learned += 1
                break
        for arm, out in outputs:
            if arm is champion or (arm is not challenger and arm not in self._scoring):
                continue  # the champion has learned; an arm dropped since no longer learns
            if self._learn_other(arm, x, y) and arm is challenger:
                c_out = out
        if exposure.served is not None:
            self.metric.update(y, exposure.served)  # type: ignore[union-attr]
        if exposure.raw is not None and self.sessions is not None:  # served to a session: the session learns
            self.sessions.learn(exposure.session, x, y, exposure.raw, ts)
        self.learned += 1
        if self.reference is not None:
            self.reference.add(x, y)
        if exposure.routed is not None:
            self._observe_routed(exposure, y, ts)
        if own is NO_OUTPUT:
            return NO_DECISIONS  # the champion changed since this request: nothing of it to judge
        classification = self.task == "classification"
        loss = (0.0 if own == y else 1.0) if classification else loss_of(self.task, y, own)  # type: ignore[arg-type]
        champion.recent.update(loss)
        c_loss = None
        if c_out is not NO_OUTPUT:
            c_loss = (0.0 if c_out == y else 1.0) if classification else loss_of(self.task, y, c_out)  # type: ignore[arg-type]
            challenger.recent.update(c_loss)  # type: ignore[union-attr]
        return self.policy.observe(self, loss, c_loss, ts)  # type: ignore[union-attr]

    def _learn_other(self, arm: Arm, x: dict, y: Any) -> bool:
        """An arm other than the champion learns; one that cannot is noted, to be dropped."""
        try:
            arm.model.learn_one(x, y)
        except Exception as err:
            self._note_failure(arm, arm.failure("learn", err))
            return False
        arm.learned += 1
        return True

    def _resolved(self, exposure: Exposure, y: Any, ts: int) -> list[Decision]:
        """:meth:`_resolve`, then what the event left to decide: arms that failed, verdicts."""
        return self._aftermath(self._resolve(exposure, y, ts), ts)

    def _aftermath(self, decisions: list[Decision], ts: int) -> list[Decision]:
        if self._failed:
            decisions = [*decisions, *self._drop_failed(ts)]
        if self._verdicts:
            decisions = [*decisions, *self._take_verdicts(ts)]
        return decisions

    def _learn_exposure(self, exposure: Exposure, y: Any, ts: int) -> list[Decision]:
        """The feedback's label for a held exposure, checked and guarded as a labeled event is."""
        return self._learn_checked(exposure, self._checked_label(y), ts)

    def _checked_label(self, y: Any) -> Any:
        """``y`` as the task's label (the first label fixes the task); :class:`InvalidEvent` if it is none."""
        if self.task is None:
            self._fix_task(y)
        return check_label(self.task, y)  # type: ignore[arg-type]

    def _learn_checked(self, exposure: Exposure, y: Any, ts: int) -> list[Decision]:
        """A checked label for a held exposure, guarded as a labeled event is."""
        if (self.source_cap is not None or self.range_guard is not None) and self._held_back(
                exposure.x, exposure.source or exposure.session):
            return NO_DECISIONS
        return self._resolved(exposure, y, ts)

    def _expired(self, expired: list[Exposure]) -> list[Decision]:
        """Requests whose feedback never came: learned with the default label, if one is set."""
        default = self.config.feedback_default
        if default is None or self.ranking is not None:  # impressions without their clicks are only counted
            return NO_DECISIONS
        decisions: list[Decision] = []
        clock = self.exposures.clock
        for exposure in expired:
            try:
                decisions += self._learn_exposure(exposure, default, clock)
            except InvalidEvent:
                self.exposures.rejected += 1  # a default that does not fit the task, or a model that fails
        return decisions

    def _note_failure(self, arm: Arm, err: InvalidEvent) -> None:
        if not self._failed:
            self._failed = []
        self._failed.append((arm, err.reason))

    def _drop_failed(self, ts: int) -> list[Decision]:
        failed, self._failed = self._failed, ModelKey._failed
        return [self.policy.arm_failed(self, arm, reason, ts)  # type: ignore[union-attr]
                for arm, reason in failed if arm is self.challenger]

    def _held_back(self, x: dict, source: str | None) -> bool:
        """Whether a guard holds the event back; only an event both let through widens the range."""
        if self.range_guard is not None and not self.range_guard.fits(x):
            self.held_back["range"] += 1
            return True
        if self.source_cap is not None and not self.source_cap.admit(source):  # source, else the session's user
            self.held_back["source"] += 1
            return True
        if self.range_guard is not None:
            self.range_guard.record(x)
        return False
