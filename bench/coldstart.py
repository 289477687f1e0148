"""Cold-start session adaptation on a simulated population (issue 5, ``bench/coldstart``).

Not part of the test suite; no broker needed::

    .venv/bin/python bench/coldstart.py [--warm-users 2000] [--eval-users 3000] [--seed 1]

One stream of ``stream_cd.simulate.population`` events (``warm + eval`` users, 30
events each, 200 sessions open at once). A global ``logreg`` (the preset:
``StandardScaler | LogisticRegression``) serves and learns every event as in
production: predict, score, then learn. The sessions of the first
``--warm-users`` users train it; the sessions of the next ``--eval-users``
users are the new sessions measured. For each of them, every candidate
adaptation method keeps its own :class:`~stream_cd.serving.sessions.SessionStore` and
is scored on the same global prediction (the adapters never touch the global
model, so one global model serves all arms). At the k-th event of a session,
k = 1..30: accuracy and log loss averaged over the new sessions, and, for the
chosen method, the paired difference from global-only with its standard
error.

Then events/s of the serving loop with adaptation off (``predict_one`` +
``learn_one``) and on (``predict_proba_one``, session predict, session learn,
``learn_one``) on the same events, alternated ``--repeat`` times in one run,
best of each, and the memory of one session.

Writes ``bench/out/coldstart.csv`` (per k, every method), ``coldstart.md``,
``coldstart.json`` and ``coldstart.png``.
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
from river import linear_model, optim

from stream_cd.simulate.population import simulate_population
from stream_cd.serving.sessions import ClassCounts, LogitResidual, SessionAdapter, SessionStore, as_proba, top_class
from stream_cd.learning.specs import ModelSpec

OUT = Path(__file__).resolve().parent / "out"
CHOSEN = "residual"
K = 30


# -- candidates that live only here --------------------------------------------

def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class RiverSession(SessionAdapter):
    """A per-session River LogisticRegression on [global logit, features], blended n/(n+k)."""

    __slots__ = ("model", "k")

    def __init__(self, k: float = 5.0, lr: float = 0.3) -> None:
        super().__init__()
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(lr))
        self.k = k

    @property
    def weight(self) -> float:
        return self.n / (self.n + self.k)

    def _x(self, x: dict, p: float) -> dict:
        return {**x, "global_logit": _logit(p)}

    def predict(self, x: dict, global_pred: Any) -> Any:
        if self.n == 0:
            return global_pred
        p = as_proba(global_pred).get(True, 0.0)
        q = self.model.predict_proba_one(self._x(x, p)).get(True, 0.5)
        w = self.weight
        a = (1 - w) * p + w * q
        return {False: 1 - a, True: a}

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        self.model.learn_one(self._x(x, as_proba(global_pred).get(True, 0.0)), y)
        self.n += 1


class MapRefit(SessionAdapter):
    """Reference, not a candidate (keeps the whole session): the MAP logistic correction
    refitted to convergence on all the session's events after each one, full covariance,
    with the population's true prior scales."""

    __slots__ = ("rows", "offsets", "ys", "w", "prec")

    def __init__(self, bias: float, weight: float, taste: float, n_features: int = 4) -> None:
        super().__init__()
        self.rows: list[list[float]] = []
        self.offsets: list[float] = []
        self.ys: list[float] = []
        self.w: np.ndarray | None = None
        self.prec = (bias, weight, taste, n_features)

    @property
    def weight(self) -> float:
        return 1.0 if self.n else 0.0

    @staticmethod
    def _row(x: dict) -> list[float]:
        return [1.0, *(float(v) for v in x.values())]

    def predict(self, x: dict, global_pred: Any) -> Any:
        if self.w is None:
            return global_pred
        p = as_proba(global_pred).get(True, 0.0)
        z = _logit(p) + float(np.dot(self._row(x), self.w))
        a = 1 / (1 + math.exp(-z))
        return {False: 1 - a, True: a}

    def learn(self, x: dict, y: Any, global_pred: Any) -> None:
        self.rows.append(self._row(x))
        self.offsets.append(_logit(as_proba(global_pred).get(True, 0.0)))
        self.ys.append(float(y))
        self.n += 1
        X, off, Y = np.array(self.rows), np.array(self.offsets), np.array(self.ys)
        bias, weight, taste, nf = self.prec
        prior = np.full(X.shape[1], 1 / taste**2)
        prior[0] = 1 / bias**2
        prior[1:1 + nf] = 1 / weight**2
        w = np.zeros(X.shape[1]) if self.w is None else self.w
        for _ in range(20):
            q = 1 / (1 + np.exp(-(off + X @ w)))
            grad = X.T @ (Y - q) - prior * w
            hess = (X * (q * (1 - q))[:, None]).T @ X + np.diag(prior)
            step = np.linalg.solve(hess, grad)
            w = w + step
            if np.abs(step).max() < 1e-6:
                break
        self.w = w


def candidates(args: argparse.Namespace) -> dict[str, Any]:
    out = {
        "offset": functools.partial(LogitResidual, features=()),
        "counts": functools.partial(ClassCounts, prior=8.0),
        "river-lr": RiverSession,
        "residual": LogitResidual,
        "residual+blend3": functools.partial(LogitResidual, blend=3.0),
    }
    if args.reference:
        out["map-refit (ref.)"] = functools.partial(MapRefit, args.user_bias, args.user_weight, args.user_taste)
    return out


# -- accuracy at the k-th event ------------------------------------------------

def population(args: argparse.Namespace, n_users: int):
    return simulate_population(n_users, K, args.seed, user_bias=args.user_bias,
                               user_weight=args.user_weight, user_taste=args.user_taste)


def coldstart(args: argparse.Namespace) -> dict[str, Any]:
    methods = candidates(args)
    names = ["global", *methods, "oracle"]
    stores = {m: SessionStore(f, max_sessions=10_000, ttl_ms=30 * 60 * 1000) for m, f in methods.items()}
    correct = {m: [[] for _ in range(K)] for m in names}  # per k, one 0/1 per new session
    loss = {m: np.zeros(K) for m in names if m != "oracle"}
    model = ModelSpec.parse("logreg").build()
    t0 = time.perf_counter()
    for event, truth in population(args, args.warm_users + args.eval_users):
        x, y, s, ts = event["x"], event["y"], event["session"], event["ts"]
        proba = model.predict_proba_one(x)
        if truth.user >= args.warm_users:
            k = truth.k
            preds = {"global": proba}
            for m, store in stores.items():
                preds[m] = store.predict(s, x, proba, ts)
            for m, p in preds.items():
                correct[m][k].append(top_class(p) == y)
                loss[m][k] -= math.log(max(1e-15, as_proba(p).get(y, 0.0)))
            correct["oracle"][k].append((truth.p > 0.5) == y)
            for m, store in stores.items():
                store.learn(s, x, y, proba, ts)
        model.learn_one(x, y)
    elapsed = time.perf_counter() - t0
    n = np.array([len(c) for c in correct["global"]])
    table = {m: {"accuracy": [float(np.mean(c)) for c in correct[m]]} for m in names}
    for m in loss:
        table[m]["log_loss"] = list(loss[m] / n)
    diff = {}
    for k in range(K):
        d = np.array(correct[CHOSEN][k], float) - np.array(correct["global"][k], float)
        diff[k + 1] = (float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))))
    return {"table": table, "sessions": int(n.min()), "diff": diff, "seconds": round(elapsed, 1),
            "store_stats": stores[CHOSEN].stats()}


# -- events/s with adaptation on and off -------------------------------------

def loop_off(events: list) -> float:
    model = ModelSpec.parse("logreg").build()
    t0 = time.perf_counter()
    for x, y, s, ts in events:
        model.predict_one(x)
        model.learn_one(x, y)
    return len(events) / (time.perf_counter() - t0)


def loop_on(events: list) -> tuple[float, SessionStore]:
    model = ModelSpec.parse("logreg").build()
    store = SessionStore(LogitResidual, max_sessions=10_000, ttl_ms=30 * 60 * 1000)
    t0 = time.perf_counter()
    for x, y, s, ts in events:
        proba = model.predict_proba_one(x)
        top_class(store.predict(s, x, proba, ts))
        store.learn(s, x, y, proba, ts)
        model.learn_one(x, y)
    return len(events) / (time.perf_counter() - t0), store


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    events = [(e["x"], e["y"], e["session"], e["ts"])
              for e, _ in population(args, args.speed_events // K)]
    off, on = [], []
    for _ in range(args.repeat):
        off.append(loop_off(events))
        rate, store = loop_on(events)
        on.append(rate)
    # memory of one session: the store's live adapters, traced
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    _, store = loop_on(events[: 200 * K])
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(s.size_diff for s in after.compare_to(before, "filename")
                 if "sessions.py" in s.traceback[0].filename or "collections" in s.traceback[0].filename)
    per_session = traced / max(1, len(store))
    pickled = len(pickle.dumps(store)) / max(1, len(store))
    return {"events": len(events), "off": max(off), "on": max(on), "ratio": max(on) / max(off),
            "bytes_per_session": round(per_session), "pickled_bytes_per_session": round(pickled)}


# -- output ----------------------------------------------------------------------

def write(result: dict[str, Any], speed: dict[str, Any], args: argparse.Namespace) -> None:
    OUT.mkdir(exist_ok=True)
    table = result["table"]
    names = list(table)
    with open(OUT / f"coldstart{args.suffix}.csv", "w") as f:
        cols = [f"{m}_{metric}" for m in names for metric in ("accuracy", "log_loss") if metric in table[m]]
        f.write("k," + ",".join(c.replace(" ", "_") for c in cols) + "\n")
        for k in range(K):
            row = [table[m][metric][k] for m in names for metric in ("accuracy", "log_loss") if metric in table[m]]
            f.write(f"{k + 1}," + ",".join(f"{v:.4f}" for v in row) + "\n")
    ks = (1, 2, 5, 10, 20, 30)
    lines = [f"Accuracy at the k-th event of {result['sessions']:,} new sessions (seed {args.seed}, "
             f"user_bias {args.user_bias}, user_weight {args.user_weight}, user_taste {args.user_taste})", "",
             "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
             "|---" * (len(ks) + 1) + "|"]
    for m in names:
        lines.append(f"| {m} | " + " | ".join(f"{table[m]['accuracy'][k - 1]:.3f}" for k in ks) + " |")
    lines += ["", "Log loss", "", "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
              "|---" * (len(ks) + 1) + "|"]
    for m in names:
        if "log_loss" in table[m]:
            lines.append(f"| {m} | " + " | ".join(f"{table[m]['log_loss'][k - 1]:.3f}" for k in ks) + " |")
    lines += ["", f"{CHOSEN} minus global, accuracy (paired, ± 1 s.e.): "
              + ", ".join(f"k={k}: {result['diff'][k][0]:+.3f} ± {result['diff'][k][1]:.3f}" for k in ks),
              "", f"events/s on {speed['events']:,} events, best of {args.repeat}: adaptation off "
              f"{speed['off']:,.0f}, on {speed['on']:,.0f}, ratio on/off {speed['ratio']:.2f}; "
              f"one session ≈ {speed['bytes_per_session']} bytes in memory, "
              f"{speed['pickled_bytes_per_session']} bytes pickled"]
    (OUT / f"coldstart{args.suffix}.md").write_text("\n".join(lines) + "\n")
    (OUT / f"coldstart{args.suffix}.json").write_text(json.dumps(
        {"args": vars(args), "python": platform.python_version(), "sessions": result["sessions"],
         "diff": result["diff"], "store_stats": result["store_stats"], "throughput": speed,
         "table": table}, indent=1))
    plot(table, result, args)
    print("\n".join(lines))


def plot(table: dict, result: dict, args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.arange(1, K + 1)
    style = {"global": dict(color="black", lw=2.2, label="global only"),
             CHOSEN: dict(color="tab:blue", lw=2.6, label=f"adapted: {CHOSEN} (chosen)"),
             "oracle": dict(color="grey", lw=1.2, ls=":", label="oracle (true p)")}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.4))
    for m in table:
        st = style.get(m, dict(lw=1.0, alpha=0.8, ls="--", label=m))
        ax1.plot(ks, table[m]["accuracy"], **st)
        if "log_loss" in table[m]:
            ax2.plot(ks, table[m]["log_loss"], **st)
    target = table["global"]["accuracy"][9] + 0.10
    ax1.plot([10], [target], marker="v", color="tab:red", ms=9, ls="none", label="target at k=10 (global + 0.10)")
    ax1.set(xlabel="k-th event of a new session", ylabel="accuracy", xlim=(1, K),
            title=f"Accuracy, {result['sessions']:,} new sessions")
    ax2.set(xlabel="k-th event of a new session", ylabel="log loss", xlim=(1, K), title="Log loss (lower is better)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"Cold-start adaptation, simulated population (user_bias {args.user_bias}, "
                 f"user_weight {args.user_weight}, user_taste {args.user_taste}, seed {args.seed})", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(OUT / f"coldstart{args.suffix}.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-users", type=int, default=2000)
    parser.add_argument("--eval-users", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--user-bias", type=float, default=2.0)
    parser.add_argument("--user-weight", type=float, default=0.7)
    parser.add_argument("--user-taste", type=float, default=1.0)
    parser.add_argument("--speed-events", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the MAP-refit reference (slow)")
    parser.add_argument("--suffix", default="", help="appended to the output file names")
    args = parser.parse_args(argv)
    result = coldstart(args)
    speed = throughput(args)
    write(result, speed, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
