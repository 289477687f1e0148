"""Ranking keys: serving ranked lists and joining their clicks, for a model key's two verbs.

A model key becomes a ranking key with its first ranking request (or an
``interleave`` experiment started on it before any event); from then on its
requests carry candidates and its feedback is clicks, and a request without
items, a labeled event or a ``y`` feedback is refused (a dead letter naming
why), as are ranking requests and clicks on a key that has served plain
requests. Its arms are click classifiers used as rankers
(:mod:`stream_cd.learning.ranker`).

``serve`` (:meth:`Rankings.score`): the champion ranks the candidates and the
top ``k`` are served; while an interleaving experiment runs, its arm ranks them
too and the served list is team-drafted from both (:mod:`stream_cd.serving.interleave`),
with the team of each placed item kept in the exposure. ``feedback``
(:meth:`Rankings.feedback`): the clicks are checked against what was served
(an unknown item is refused and the request goes on waiting), joined to the
exposure, credited to the teams for the experiment, and turned into labels
(skip-above) that every ranker learns from: all of them with ``learn: all``
(the default), or each its own team's items with ``learn: own``. Impressions
whose clicks never come expire and are counted, never learned.

The shadow's paired test, drift detection and the update triggers do not act
on ranking keys: a ranker is judged only by what users click on, which needs
it served, so by an interleaving experiment. Version checkpoints do
(``version_every`` impressions).

>>> from stream_cd.config import PipelineConfig
>>> from stream_cd.events import decode_event
>>> from stream_cd.model_key import ModelKey
>>> key = ModelKey("search", PipelineConfig(model="logreg"))
>>> request = decode_event(b'{"id": "q1", "x": {"f": 1.0}, "items": [{"id": "a", "x": {"f": 1}}, {"id": "b", "x": {"f": -1}}], "k": 2}')
>>> exposure, _ = key.serve(request.x, 0, request.id, ranking=request)
>>> exposure.served
('a', 'b')
>>> key.feedback("q1", ("b",), ts=5)
[]
>>> key.feedback("q2", ("c",), ts=5)
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: feedback for request 'q2': no such request is waiting for feedback (never served here, or its id is wrong)
>>> key.summary()["task"], key.summary()["metric"], key.summary()["ranking"]["labelled"]
('ranking', {'name': 'ClickThrough', 'value': 1.0}, 2)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from stream_cd.errors import ConfigError, InvalidEvent
from stream_cd.evaluation.definition import CONTROL
from stream_cd.evaluation.policy import Policy
from stream_cd.learning.ranker import ClickThrough, candidate_features, click_labels, rank
from stream_cd.learning.schema import Schema
from stream_cd.learning.triggers import TriggerSettings
from stream_cd.serving.interleave import TeamDraftRouter, credit

if TYPE_CHECKING:
    from stream_cd.decisions import Decision
    from stream_cd.events import RankingRequest
    from stream_cd.learning.arms import Arm
    from stream_cd.model_key import ModelKey

__all__ = ["RankedExposure", "Rankings"]

_ROUTER = TeamDraftRouter()


class RankedExposure:
    """One ranking request as it was served: the query's features, the candidates (ids and
    features, as given), the champion's and any challenger's ranking (``outputs``: ``(arm,
    candidate indexes)``), the served list (``positions``: candidate indexes; ``served``: their
    ids) and, when interleaved, the team of each position (0 the champion, 1 the arm) and the
    names of the two teams' arms."""

    __slots__ = ("x", "ts", "item_ids", "items", "outputs", "positions", "served", "teams", "names", "session",
                 "source", "routed")

    def __init__(self, x: dict, ts: int, item_ids: tuple[str, ...], items: list[dict], outputs: tuple,
                 positions: list[int], teams: list[int] | None = None, names: tuple[str, ...] = ("champion",),
                 session: str | None = None, source: str | None = None) -> None:
        self.x = x
        self.ts = ts
        self.item_ids = item_ids
        self.items = items
        self.outputs = outputs
        self.positions = positions
        self.served = tuple(item_ids[j] for j in positions)
        self.teams = teams
        self.names = names
        self.session = session
        self.source = source
        self.routed: tuple[str, str, int] | None = None  # (experiment, "interleave", 0) when interleaved

    def record(self, model_key: str, ident: str | None, ts: int) -> dict[str, Any]:
        """The served ranking as one message of the predictions topic: item ids in served
        order, each with the arm that placed it, and each arm's version.

        >>> class Arm: name, label = "champion", "v1.0"
        >>> RankedExposure({}, 7, ("a", "b"), [{}, {}], ((Arm, [1, 0]),), [1, 0]).record("s", "q1", 7)["ranking"]
        [{'id': 'b', 'arm': 'champion'}, {'id': 'a', 'arm': 'champion'}]
        """
        routed, names, teams = self.routed, self.names, self.teams
        arms = [names[0]] * len(self.served) if teams is None else [names[t] for t in teams]
        return {"id": ident, "model_key": model_key, "arm": "interleaved" if teams is not None else names[0],
                "version": self.outputs[0][0].label, "experiment": None if routed is None else routed[0],
                "ranking": [{"id": item, "arm": arm} for item, arm in zip(self.served, arms)],
                "versions": {name: arm.label for name, (arm, _) in zip(names, self.outputs)}, "ts": ts}


class Rankings:
    """The ranking side of one model key (see the module docstring)."""

    def __init__(self, key: ModelKey) -> None:
        if key.learned or len(key.exposures):
            raise InvalidEvent(f"model key {key.key!r} serves requests without items; a ranking request cannot be "
                               "served by it (rank on a model key of its own)")
        running = key.running
        if running is not None and running.test.kind != "interleave":
            raise InvalidEvent(f"model key {key.key!r} runs {running.test.kind} experiment {running.name!r}, which "
                               "compares classifiers; rankers are compared by an interleave experiment")
        try:
            key.spec.check_task("classification")
            if key.shadow_spec is not None:
                key.shadow_spec.check_task("classification")
        except ConfigError as err:
            raise InvalidEvent(f"model key {key.key!r} cannot rank: {err} (a ranker is a click classifier)") from None
        if not hasattr(key.champion.model, "predict_proba_one"):
            raise InvalidEvent(f"model key {key.key!r} cannot rank: model spec {key.spec.name!r} has no "
                               "predict_proba_one, and a ranker orders candidates by their probability of a click")
        self.query_schema, self.item_schema = Schema(key.key), Schema(key.key)
        self.impressions = self.labelled = 0
        key.task = "classification"
        key.sessions = None  # sessions adapt a classifier's own predictions; a ranking has none to adapt
        key.metric = ClickThrough()
        # the shadow's paired test, drift detection and triggers do not apply; versions do
        key.policy = Policy("classification", replace(key.config, drift="none", triggers=TriggerSettings()))

    # -- serve ------------------------------------------------------------------------

    def check(self, request: RankingRequest | None) -> None:
        """Refuse what a ranking key cannot serve, and features that changed kind."""
        if request is None:
            raise InvalidEvent("this model key ranks: a request needs items (candidates to rank), and feedback is "
                               "clicked (the ids of the clicked items)")
        self.query_schema.check(request.x, request.numeric)
        check = self.item_schema.check
        for item in request.items:
            check(item, request.numeric)

    def score(self, key: ModelKey, request: RankingRequest, ts: int, ident: str | None) -> RankedExposure:
        """Rank the candidates with the champion (and the interleaving arm); the served list."""
        features = candidate_features(request.x, request.items)
        champion = key.champion
        try:
            order = rank(champion.model, features)
        except Exception as err:  # a model that cannot use this request must not stop the worker
            raise champion.failure("rank", err) from None
        running = key.running
        k = request.k
        if running is None or running.test.kind != "interleave" or running.test.state != "running":
            exposure = RankedExposure(request.x, ts, request.item_ids, request.items, ((champion, order),), order[:k],
                                      None, (champion.name,), request.session, request.source)
        else:
            arm = running.arms[running.test.arm]
            try:
                other = rank(arm.model, features)
            except Exception as err:  # an arm that cannot rank a valid request: the request is rejected
                raise arm.failure("rank", err) from None
            served, teams = _ROUTER.merge(order, other, k, running.name, ident if ident is not None else
                                          f"#{key.events_seen}")
            exposure = RankedExposure(request.x, ts, request.item_ids, request.items, ((champion, order), (arm, other)),
                                      served, teams, (CONTROL, arm.name), request.session, request.source)
            exposure.routed = (running.name, _ROUTER.name, 0)
        key.last_served = exposure
        return exposure

    # -- feedback ---------------------------------------------------------------------

    def feedback(self, key: ModelKey, ident: str, clicked: Any, ts: int) -> list[Decision]:
        """Join the clicks of request ``ident``; learn; judge."""
        if type(clicked) is not tuple:
            raise InvalidEvent(f"this model key ranks: the feedback of request {ident!r} is clicked (the ids of the "
                               f"clicked items), not a label y {clicked!r}")
        exposures = key.exposures
        waiting = exposures.pending.get(ident)
        if type(waiting) is RankedExposure:
            served = waiting.served
            for item in clicked:
                if item not in served:
                    exposures.rejected += 1
                    shown = ", ".join(map(repr, served[:10])) + (", ..." if len(served) > 10 else "")
                    raise InvalidEvent(f"clicked item {item!r} was not served for request {ident!r} (served: {shown})")
        exposure = exposures.take(ident, ts)  # raises for an unknown, expired or answered id
        decisions = self.resolve(key, exposure, clicked, ts)
        exposures.expire_due(ts)  # impressions whose clicks never came are counted, not learned
        return decisions

    def resolve(self, key: ModelKey, exposure: RankedExposure, clicked_ids: tuple[str, ...], ts: int) -> list[Decision]:
        """Learn from an impression's clicks (skip-above labels) and credit them to the teams."""
        index = {item: j for j, item in enumerate(exposure.item_ids)}
        clicked = frozenset(index[item] for item in clicked_ids)
        positions = exposure.positions
        labels = click_labels(positions, clicked)
        running, routed = key.running, exposure.routed
        live = running is not None and routed is not None and routed[0] == running.name
        if labels:
            features = candidate_features(exposure.x, [exposure.items[j] for j, _ in labels])
            examples = [(x, label) for x, (_, label) in zip(features, labels)]
            teams = exposure.teams
            own = live and teams is not None and running.definition.learn == "own"  # type: ignore[union-attr]
            if own:  # each ranker learns the items its team placed; a shadow, all of them
                team_of = {id(arm): team for team, (arm, _) in enumerate(exposure.outputs)}
            for n, arm in enumerate(key._learners):
                team = team_of.get(id(arm)) if own else None
                mine = examples if team is None else [e for e, t in zip(examples, teams) if t == team]  # type: ignore[arg-type]
                self._learn(key, arm, mine, champion=n == 0)
            if key.reference is not None:
                for x, label in examples:
                    key.reference.add(x, label)
            self.labelled += len(examples)
        self.impressions += 1
        key.learned += 1
        key.metric.update(len(clicked))  # type: ignore[union-attr]
        if live and exposure.teams is not None:
            verdict = running.test.credit(*credit(exposure.teams, positions, clicked))  # type: ignore[union-attr]
            if verdict is not None:
                key._verdicts = [*key._verdicts, verdict]
        decisions = key.policy.observe(key, 0.0 if clicked else 1.0, None, ts)  # type: ignore[union-attr]
        return key._aftermath(decisions, ts)

    @staticmethod
    def _learn(key: ModelKey, arm: Arm, examples: list[tuple[dict, bool]], champion: bool) -> None:
        """``arm`` learns the labelled items; its ``learned`` counts them."""
        if not examples:
            return
        learn = arm.model.learn_one
        try:
            for x, label in examples:
                learn(x, label)
        except Exception as err:
            if champion:  # the champion cannot learn it: the clicks are rejected
                raise arm.failure("learn", err) from None
            key._note_failure(arm, arm.failure("learn", err))
            return
        arm.learned += len(examples)

    def stats(self) -> dict[str, int]:
        return {"impressions": self.impressions, "labelled": self.labelled}
