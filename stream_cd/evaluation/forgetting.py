"""The forgetting guard: before a promotion, the candidate is checked on older data.

A model that keeps learning from the latest events can forget what it knew (a
retrain born after a change never knew it): fine when the change lasts, costly
when the old pattern comes back (weekly cycles, seasons, Black Friday). Each
model key keeps a reference sample of its labeled events: a reservoir of
``size`` events uniform over its whole history (Vitter's algorithm R, seeded
by the key so replays agree). Before any promotion, the candidate and the
champion both predict the sample and their losses are compared with a one-sided
paired test, run once per promotion (so a fixed-sample test is the right one):
the exact McNemar test on the discordant pairs for classification
(``scipy.stats.binomtest``), the Wilcoxon signed-rank test on the loss
differences for regression (``scipy.stats.wilcoxon``). The candidate has
*forgotten* when it is worse on the sample at ``alpha`` (default 0.01).

``mode``: ``warn`` (the default) promotes and publishes the evidence with the
promotion; ``block`` holds the promotion back with a ``hold`` decision
(trigger ``forgetting``); ``off`` skips the check.

Method and references: McNemar, Q. (1947), "Note on the sampling error of the
difference between correlated proportions or percentages", *Psychometrika*
12(2); Wilcoxon, F. (1945), "Individual comparisons by ranking methods",
*Biometrics Bulletin* 1(6); Vitter, J. S. (1985), "Random sampling with a
reservoir", *ACM TOMS* 11(1). The exact McNemar test conditions on the
discordant pairs, so it never holds more than ``alpha`` of equally good
candidates, however correlated the two models' errors are; it is discrete, so a
little less.

Operating characteristics, measured by simulation (``bench/forgetting.py``,
:mod:`stream_cd.simulate.forgetting`; 10,000 promotions per cell, the
classification rows also exact): both models err 20 % on average through a
shared per-event difficulty (errors correlated 0.5, agreeing on 84 % of
events); regression losses ``|z + e|`` with a common ``z`` (sd 1) and each
model's own ``e`` (sd 0.5). The effect: the candidate has forgotten an old
regime that makes 30 % of the history, 0.10 worse in error rate there (0.03
overall), or 10 % worse in mean absolute error there (3 % overall).

=================  =====  ==========  ==========  ========  ==========
reference size     alpha  false hold  false hold  power     power
                          classif.    regression  classif.  regression
=================  =====  ==========  ==========  ========  ==========
500                0.01   0.0074      0.0093      0.19      0.07
500                0.05   0.039       0.053       0.43      0.21
2,000 (default)    0.01   0.0086      0.0092      0.78      0.29
2,000 (default)    0.05   0.045       0.051       0.93      0.54
10,000             0.01   0.0094      0.0106      1.00      0.94
10,000             0.05   0.048       0.050       1.00      0.99
=================  =====  ==========  ==========  ========  ==========

At the default size and alpha 0.01 the guard holds with 80 % power a candidate
0.103 worse in error rate on the old 30 % (0.031 overall), or 19 % worse in
MAE there (5.8 % overall); at 0.05, 0.080 (0.024) and 15 % (4.4 %).

The test runs once per promotion, a fixed-sample test, and its rate is per
promotion. A key promoted weekly for a year (52 looks, each its own
decision) expects 52 x 0.0086 = 0.45 false holds; the chance of at least one
is about 36 %. A false hold costs a delay: a good candidate is not promoted this
time (in ``block`` mode; ``warn`` only publishes the evidence); it never puts a
worse model in service.

>>> sample = ReferenceSample(size=3, seed="k")
>>> for i in range(100):
...     sample.add({"f": float(i)}, i % 2 == 0)
>>> len(sample.items), sample.seen
(3, 100)
>>> class Always:
...     def __init__(self, answer): self.answer = answer
...     def predict_one(self, x): return self.answer
>>> big = ReferenceSample(size=200, seed="k")
>>> for i in range(1000):
...     big.add({"f": float(i)}, True)
>>> forgot, evidence = check_forgetting("classification", Always(True), Always(False), big)
>>> forgot, evidence["champion_loss"], evidence["candidate_loss"], evidence["p_value"] < 1e-10
(True, 0.0, 1.0, True)
"""

from __future__ import annotations

import marshal
import random
from typing import Any

from scipy import stats

from stream_cd.learning.tasks import loss_of

__all__ = ["ReferenceSample", "check_forgetting", "MODES"]

MODES = ("warn", "block", "off")


class ReferenceSample:
    """A uniform sample of ``size`` labeled events over a key's whole history.

    Each kept event is held as one ``marshal`` record of ``(x, y)``. Measured on a logreg
    pair's key with 2,000 Agrawal events sampled: as dicts of features the sample held
    about 1,000 KiB (10 GB for ten thousand keys), as records 370 KiB; and a snapshot
    pickles the records at once, where pickling one small dict at a time was four fifths
    of the snapshot's time (6.8 ms with the worker's unpickled copy, now 1.1 ms). marshal gives back the same values exactly: floats bit for bit,
    ints, bools, strings. An event marshal cannot write is kept as it is. The sample is
    read only when a promotion is checked (:meth:`pairs`).

    >>> sample = ReferenceSample(size=2, seed="k")
    >>> sample.add({"f": 0.1, "g": "red"}, True); sample.add({"f": float("nan")}, 2.5)
    >>> first, second = sample.pairs()
    >>> first, second[1], second[0]["f"] != second[0]["f"], sample.seen
    (({'f': 0.1, 'g': 'red'}, True), 2.5, True, 2)
    """

    def __init__(self, size: int = 2000, seed: str = "") -> None:
        self.size = size
        self.items: list[bytes | tuple[dict, Any]] = []
        self.seen = 0
        self.rng = random.Random(f"reference:{seed}")

    def add(self, x: dict, y: Any) -> None:
        self.seen = seen = self.seen + 1
        items = self.items
        if len(items) < self.size:
            items.append(_kept(x, y))
            return
        j = int(self.rng.random() * seen)
        if j < self.size:
            items[j] = _kept(x, y)

    def pairs(self) -> list[tuple[dict, Any]]:
        """The sampled events, as ``(x, y)``."""
        return [marshal.loads(item) if type(item) is bytes else item for item in self.items]  # type: ignore[misc]


def _kept(x: dict, y: Any) -> bytes | tuple[dict, Any]:
    try:
        return marshal.dumps((x, y))
    except ValueError:  # a feature value marshal does not know
        return (x, y)


def _loss(task: str, model: Any, x: dict, y: Any) -> float | None:
    """``model``'s loss on an old event, or None when it cannot predict it."""
    try:
        return loss_of(task, y, model.predict_one(x))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - whatever the model raises
        return None


def check_forgetting(task: str, champion: Any, candidate: Any, sample: ReferenceSample,
                     alpha: float = 0.01) -> tuple[bool, dict[str, Any]]:
    """Whether ``candidate`` is worse than ``champion`` on the reference sample, with the evidence.

    A model that cannot predict an old event has not kept it: it takes the worst loss there
    (1, or infinity for regression), and an event neither can predict is left out.
    """
    champion_losses, candidate_losses = [], []
    worst = 1.0 if task == "classification" else float("inf")
    for x, y in sample.pairs():
        champion_loss, candidate_loss = _loss(task, champion, x, y), _loss(task, candidate, x, y)
        if champion_loss is None and candidate_loss is None:
            continue
        champion_losses.append(worst if champion_loss is None else champion_loss)
        candidate_losses.append(worst if candidate_loss is None else candidate_loss)
    n = len(champion_losses)
    evidence: dict[str, Any] = {"reference_events": n, "alpha": alpha}
    if n == 0:
        return False, {**evidence, "p_value": 1.0}
    evidence["champion_loss"] = sum(champion_losses) / n
    evidence["candidate_loss"] = sum(candidate_losses) / n
    if task == "classification":
        worse = sum(c > h for c, h in zip(candidate_losses, champion_losses))
        better = sum(c < h for c, h in zip(candidate_losses, champion_losses))
        p = float(stats.binomtest(worse, worse + better, 0.5, alternative="greater").pvalue) if worse + better else 1.0
        evidence.update(test="mcnemar-exact", candidate_worse=worse, candidate_better=better)
    else:
        diffs = [c - h for c, h in zip(candidate_losses, champion_losses)]
        p = float(stats.wilcoxon(diffs, alternative="greater").pvalue) if any(diffs) else 1.0
        evidence["test"] = "wilcoxon-signed-rank"
    evidence["p_value"] = p
    return p < alpha, evidence
