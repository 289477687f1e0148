"""Sample-ratio mismatch: is the split of units between arms the configured one?

A split that is not the configured one means the assignment is broken (a
redirect that loses users, a bot filter on one arm, a crashing variant), and
an experiment's results are then void. The check vendors run is Pearson's
chi-square goodness of fit of the units per arm against the weights at
p < 0.001 (``scipy.stats.chisquare``), but run after every unit it would alarm
on a correct split sooner or later. Here the alarm comes from an anytime-valid
test of the same hypothesis: the Dirichlet-multinomial mixture likelihood ratio
of Lindon and Malek (2022, "Anytime-valid inference for multinomial count
data"), the sequential SRM test of Optimizely's Stats Engine::

    Lambda_n = B(a + n) / B(a) / prod_k w_k^n_k,   a_k = concentration * w_k

(``B`` the multivariate beta function, ``n`` the units per arm, ``w`` the
weights), a nonnegative martingale under the configured split; an alarm when it
reaches 1/alpha has probability at most ``alpha`` however long it runs. The
chi-square p-value is reported beside it, as the familiar figure.

The concentration (how far from the weights the mixture looks) was chosen by
simulation for a 52/48 split of a 50/50 configuration, alpha 0.001, evaluated
every 50 units (200 runs each; false alarms over 50,000 units of a correct
split; tests/stream_cd/evaluation/test_srm.py measures the default again)::

    concentration    false alarms    52/48 found within 20,000    median units
              200           0.000                        0.935           9,950
            1,000           0.000                        0.935          10,675
            2,000           0.000                        0.960          10,625
            5,000           0.000                        0.960          12,425
           20,000           0.000                        0.590          18,775

>>> srm = SampleRatioTest([0.5, 0.5], alpha=0.001)
>>> import random
>>> rng = random.Random(1)
>>> alarm = next(n for n in range(1, 100_000) if srm.update(0 if rng.random() < 0.46 else 1))
>>> alarm, srm.evidence()["chi2_p_value"] < 0.001
(3450, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import gammaln

__all__ = ["SampleRatioTest", "srm_log_lr", "DEFAULT_CONCENTRATION"]

DEFAULT_CONCENTRATION = 2_000.0


def srm_log_lr(counts: Any, weights: Any, concentration: float = DEFAULT_CONCENTRATION) -> Any:
    """log Lambda of the Dirichlet-multinomial mixture for counts (last axis: arms), scalars or arrays."""
    counts = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    a = concentration * w
    n = counts.sum(axis=-1)
    log_b_post = gammaln(a + counts).sum(axis=-1) - gammaln(a.sum() + n)
    log_b_prior = gammaln(a).sum() - gammaln(a.sum())
    return log_b_post - log_b_prior - (counts * np.log(w)).sum(axis=-1)


class SampleRatioTest:
    """Units per arm against the weights, anytime-valid (see the module docstring)."""

    def __init__(self, weights: list[float], alpha: float = 0.001, concentration: float = DEFAULT_CONCENTRATION,
                 every: int = 50) -> None:
        total = float(sum(weights))
        self.weights = [w / total for w in weights]
        self.alpha = alpha
        self.concentration = concentration
        self.every = every  # units between evaluations: any subsequence of looks is still valid
        self.counts = [0] * len(weights)
        self.best = 0.0  # running max of log Lambda
        self.alarmed = False

    def update(self, arm: int) -> bool:
        """Count one new unit of arm ``arm``; True once the split is shown not to be the configured one."""
        self.counts[arm] += 1
        if not self.alarmed and sum(self.counts) % self.every == 0:
            value = float(srm_log_lr(self.counts, self.weights, self.concentration))
            self.best = max(self.best, value)
            self.alarmed = value >= -math.log(self.alpha)
        return self.alarmed

    def evidence(self) -> dict[str, Any]:
        n = sum(self.counts)
        chi2 = stats.chisquare(self.counts, [w * n for w in self.weights]) if n else None
        return {"test": "dirichlet-multinomial-mixture", "units": list(self.counts), "weights": self.weights,
                "p_value": min(1.0, math.exp(-self.best)), "alpha": self.alpha,
                "chi2_p_value": None if chi2 is None else float(chi2.pvalue), "concentration": self.concentration}
