"""Cold-start session adaptation on simulated populations that differ in different ways (issues 5, 18).

Not part of the test suite (``tests/stream_cd/test_coldstart.py`` checks the
same statements on smaller populations); no broker needed::

    .venv/bin/python bench/coldstart.py [--warm-users 2000] [--eval-users 3000] [--seed 1] [--reference]

For each population of :data:`stream_cd.simulate.coldstart.POPULATIONS` (``bias``:
users differ in base rate only; ``weights-small``: their weights depart by
0.3 times the global weights; ``weights-large``: by 1.6 times, plus a per-user
offset; ``weights-large-only``: the same weights without the offset), one
stream of ``warm + eval`` users, 30 events each, 200 sessions open at once,
through :func:`stream_cd.simulate.coldstart.accuracy_at_k`: a global ``logreg`` serves
and learns every event; the first ``--warm-users`` users' sessions train it
(and the learned prior); the next ``--eval-users`` users' sessions are the new
sessions measured. Methods: global only; :class:`~stream_cd.serving.sessions.LogitResidual`
with a fixed prior (today's default 1.5 / 0.5, a cautious 0.75 / 0.25, a bold
3.0 / 1.0: offset / weight spreads); with the prior learned by empirical Bayes
(:mod:`stream_cd.serving.session_prior`); a per-session SGD correction with fixed steps
(0.5 offset, 0.2 weights, the best at k = 10 of six step pairs tried). With
``--reference``, also the same adapter given the population's true spreads,
and the full MAP refit after every event with the true prior (slow; it keeps
the whole session).

Then events/s of the serving loop with adaptation off, with the fixed prior and
with the learned one, on the same events, alternated ``--repeat`` times, best of
each, and the memory of one session.

Writes ``bench/out/coldstart.{csv,md,json,png}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pickle
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from stream_cd.simulate.coldstart import POPULATIONS, accuracy_at_k, methods
from stream_cd.simulate.population import departure_spreads, simulate_population
from stream_cd.serving.session_prior import BIAS, PopulationPrior
from stream_cd.serving.sessions import LogitResidual, SessionAdapter, SessionStore, as_proba, top_class
from stream_cd.learning.specs import ModelSpec

OUT = Path(__file__).resolve().parent / "out"
K = 30
KS = (1, 5, 10, 30)


class MapRefit(SessionAdapter):
    """Reference, not a candidate (keeps the whole session): the MAP logistic correction
    refitted to convergence on all the session's events after each one, full covariance,
    with the population's true prior spreads (offset, then each feature as ``x`` orders them)."""

    __slots__ = ("rows", "offsets", "ys", "w", "prior")

    def __init__(self, spreads: tuple[float, ...]) -> None:
        super().__init__()
        self.rows: list[list[float]] = []
        self.offsets: list[float] = []
        self.ys: list[float] = []
        self.w: np.ndarray | None = None
        self.prior = 1.0 / np.maximum(np.array(spreads), 0.05) ** 2

    @property
    def weight(self) -> float:
        return 1.0 if self.n else 0.0

    def predict(self, x: dict, global_pred: Any) -> Any:
        if self.w is None:
            return global_pred
        z = _logit(as_proba(global_pred).get(True, 0.0)) + float(np.dot([1.0, *x.values()], self.w))
        a = 1 / (1 + math.exp(-z))
        return {False: 1 - a, True: a}

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        self.rows.append([1.0, *(float(v) for v in x.values())])
        self.offsets.append(_logit(as_proba(global_pred).get(True, 0.0)))
        self.ys.append(float(y))
        self.n += 1
        X, off, Y, prior = np.array(self.rows), np.array(self.offsets), np.array(self.ys), self.prior
        w = np.zeros(X.shape[1]) if self.w is None else self.w
        for _ in range(20):
            q = 1 / (1 + np.exp(-(off + X @ w)))
            step = np.linalg.solve((X * (q * (1 - q))[:, None]).T @ X + np.diag(prior), X.T @ (Y - q) - prior * w)
            w = w + step
            if np.abs(step).max() < 1e-6:
                break
        self.w = w


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class TruePrior(PopulationPrior):
    """Reference: the population's true spreads, never updated (the adapter given the truth)."""

    def __init__(self, spreads: tuple[float, ...]) -> None:
        super().__init__()
        names = [BIAS, "f0", "f1", "f2", "f3", "genre_0", "genre_1", "genre_2", "genre_3"]
        self._prec = {name: 1.0 / max(sd, 0.05) ** 2 for name, sd in zip(names, spreads)}

    def observe(self, posterior: Any) -> None:
        pass


def true_spreads(population: dict[str, Any]) -> tuple[float, ...]:
    bias, w, g = departure_spreads(population["departure"], population["departure_scale"])
    return (bias, *w, *g)


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Every method on every population: accuracy, log loss, paired differences, learned spreads."""
    out = {}
    for name in args.populations:
        population = POPULATIONS[name]
        stores = methods()
        if args.reference:
            truth = true_spreads(population)
            stores["adapter, true prior (ref.)"] = functools.partial(SessionStore, functools.partial(
                LogitResidual, population=TruePrior(truth)), ttl_ms=None, learn_prior=False)
            stores["map refit, true prior (ref.)"] = functools.partial(
                SessionStore, functools.partial(MapRefit, truth), ttl_ms=None, learn_prior=False)
        t0 = time.perf_counter()
        r = accuracy_at_k(population, stores, warm_users=args.warm_users, eval_users=args.eval_users, seed=args.seed)
        diff = {}
        for k in KS:
            for other in ("global", "fixed (today)", "sgd (fixed steps)"):
                d = r.correct["learned"][:, k - 1].astype(float) - r.correct[other][:, k - 1]
                diff[f"k={k} learned-{other}"] = (float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))))
        spreads = dict(zip(["bias", "f0", "f1", "f2", "f3", "genre_0", "genre_1", "genre_2", "genre_3"],
                           true_spreads(population)))
        out[name] = {"accuracy": r.accuracy, "log_loss": r.log_loss, "sessions": r.sessions, "diff": diff,
                     "learned_spreads": r.stores["learned"].prior.spreads(), "true_spreads": spreads,
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: {out[name]['seconds']} s", file=sys.stderr, flush=True)
    return out


# -- events/s with adaptation off, fixed and learned ---------------------------

def loop(events: list, store: SessionStore | None) -> float:
    model = ModelSpec.parse("logreg").build()
    t0 = time.perf_counter()
    if store is None:
        for x, y, s, ts in events:
            model.predict_one(x)
            model.learn_one(x, y)
    else:
        for x, y, s, ts in events:
            proba = model.predict_proba_one(x)
            top_class(store.predict(s, x, proba, ts))
            store.learn(s, x, y, proba, ts)
            model.learn_one(x, y)
    return len(events) / (time.perf_counter() - t0)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    events = [(e["x"], e["y"], e["session"], e["ts"])
              for e, _ in simulate_population(args.speed_events // K, K, args.seed, **POPULATIONS["weights-large"])]
    rates: dict[str, list[float]] = {"off": [], "fixed": [], "learned": []}
    for _ in range(args.repeat):
        rates["off"].append(loop(events, None))
        rates["fixed"].append(loop(events, SessionStore(LogitResidual, learn_prior=False)))
        rates["learned"].append(loop(events, SessionStore(LogitResidual)))
    store = SessionStore(LogitResidual)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    loop(events[: 200 * K], store)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(s.size_diff for s in after.compare_to(before, "filename")
                 if "session" in s.traceback[0].filename or "collections" in s.traceback[0].filename)
    best = {m: max(r) for m, r in rates.items()}
    return {"events": len(events), **best, "bytes_per_session": round(traced / max(1, len(store))),
            "pickled_bytes_per_session": round(len(pickle.dumps(store)) / max(1, len(store)))}


# -- output ----------------------------------------------------------------------

def table(result: dict[str, Any], metric: str) -> list[str]:
    lines = ["| population | method | " + " | ".join(f"k={k}" for k in KS) + " |", "|---" * (len(KS) + 2) + "|"]
    for name, r in result.items():
        for m, values in r[metric].items():
            lines.append(f"| {name} | {m} | " + " | ".join(f"{values[k - 1]:.3f}" for k in KS) + " |")
    return lines


def report(result: dict[str, Any], speed: dict[str, Any], args: argparse.Namespace) -> list[str]:
    n = next(iter(result.values()))["sessions"]
    lines = [f"Accuracy at the k-th event of {n:,} new sessions per population "
             f"(seed {args.seed}, {args.warm_users:,} warm-up users)", "", *table(result, "accuracy"),
             "", "Log loss (lower is better)", "", *table(result, "log_loss"), "",
             "Learned minus other, accuracy (paired, ± 1 s.e.)", ""]
    for name, r in result.items():
        lines.append(f"- {name}: " + ", ".join(f"{key.split(' ')[0]} {key.split('learned-')[1]} {d:+.3f} ± {se:.3f}"
                                              for key, (d, se) in r["diff"].items() if key.startswith(("k=5", "k=10"))))
    lines += ["", "Spreads (sd, logits): learned / true", ""]
    for name, r in result.items():
        learned = r["learned_spreads"]
        lines.append(f"- {name}: " + ", ".join(
            f"{c} {learned.get(c, learned['features']):.2f}/{t:.2f}" for c, t in r["true_spreads"].items()))
    lines += ["", f"events/s on {speed['events']:,} events, best of {args.repeat}: adaptation off {speed['off']:,.0f}, "
              f"fixed prior {speed['fixed']:,.0f}, learned prior {speed['learned']:,.0f} "
              f"(learned/fixed {speed['learned'] / speed['fixed']:.2f}); one session ≈ "
              f"{speed['bytes_per_session']} bytes in memory, {speed['pickled_bytes_per_session']} bytes pickled"]
    return lines


def write(result: dict[str, Any], speed: dict[str, Any], args: argparse.Namespace) -> None:
    OUT.mkdir(exist_ok=True)
    with open(OUT / f"coldstart{args.suffix}.csv", "w") as f:
        f.write("population,method,k,accuracy,log_loss\n")
        for name, r in result.items():
            for m in r["accuracy"]:
                for k in range(K):
                    f.write(f"{name},{m},{k + 1},{r['accuracy'][m][k]:.4f},{r['log_loss'][m][k]:.4f}\n")
    lines = report(result, speed, args)
    (OUT / f"coldstart{args.suffix}.md").write_text("\n".join(lines) + "\n")
    (OUT / f"coldstart{args.suffix}.json").write_text(json.dumps(
        {"args": vars(args), "python": platform.python_version(), "throughput": speed, "populations": result},
        indent=1))
    plot(result, args)
    print("\n".join(lines))


STYLE = {"global": dict(color="black", lw=2.2), "learned": dict(color="tab:blue", lw=2.6),
         "fixed (today)": dict(color="tab:orange", lw=1.6), "sgd (fixed steps)": dict(color="tab:green", lw=1.6),
         "fixed, cautious": dict(color="tab:purple", lw=1.0, ls="--"),
         "fixed, bold": dict(color="tab:brown", lw=1.0, ls="--"),
         "adapter, true prior (ref.)": dict(color="grey", lw=1.0, ls=":"),
         "map refit, true prior (ref.)": dict(color="tab:red", lw=1.0, ls=":")}


def plot(result: dict[str, Any], args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.arange(1, K + 1)
    fig, axes = plt.subplots(1, len(result), figsize=(4.2 * len(result), 4.6), sharey=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], result.items()):
        for m, acc in r["accuracy"].items():
            ax.plot(ks, acc, label=m, **STYLE.get(m, dict(lw=1.0, ls="--", alpha=0.8)))
        ax.axvline(10, color="grey", lw=0.6, ls=":")
        ax.set(title=name, xlabel="k-th event of a new session", xlim=(1, K))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"Cold-start adaptation, fixed vs learned prior ({next(iter(result.values()))['sessions']:,} "
                 f"new sessions per population, seed {args.seed})", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(OUT / f"coldstart{args.suffix}.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-users", type=int, default=2000)
    parser.add_argument("--eval-users", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--populations", nargs="+", choices=list(POPULATIONS), default=list(POPULATIONS))
    parser.add_argument("--speed-events", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="add the MAP refit with the true prior (slow)")
    parser.add_argument("--suffix", default="", help="appended to the output file names")
    args = parser.parse_args(argv)
    result = compare(args)
    speed = throughput(args)
    write(result, speed, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
