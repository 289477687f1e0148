"""Operating characteristics of the forgetting guard (``stream_cd.evaluation.forgetting``).

Run by hand (not part of the test suite; no broker, ~3 min)::

    .venv/bin/python bench/forgetting.py [--runs 10000] [--sizes 500,2000,10000] [--alphas 0.01,0.05]
        [--guard-runs 300] [--out bench/out/forgetting.json]

On the scenarios of :mod:`stream_cd.simulate.forgetting` (errors correlated through a shared
per-event difficulty; the candidate 0.10 worse in error rate, or 10 % worse in MAE, on the 30 %
of reference events from an old regime):

* the false-hold rate under the null (the two models equally good) and the hold probability
  for the stated effect, per reference size and alpha, ``--runs`` simulated promotions each
  (classification also exactly, summed over the discordant count);
* the smallest worsening on old events (and overall) held with 80 % power at the default size;
* the same hold rates through ``check_forgetting`` itself, ``--guard-runs`` runs with toy models
  fed through ``ReferenceSample``, beside the vectorised figure (a 99 % Wilson interval);
* what a per-promotion false-hold rate means over a key's life of many promotions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from statsmodels.stats.proportion import proportion_confint

from stream_cd.simulate.forgetting import (RegressionScenario, Scenario, classification_holds,
                                           exact_hold_probability, guard_run, regression_holds,
                                           smallest_detectable)

DEFAULT_SIZE = 2000


def rates(args: argparse.Namespace, console: Console) -> list[dict]:
    rows = []
    for task in ("classification", "regression"):
        for effect in (0.0, 0.10):
            for size in args.sizes:
                for alpha in args.alphas:
                    rng = np.random.default_rng([args.seed, size, int(alpha * 1000), int(effect * 100)])
                    if task == "classification":
                        sc = Scenario(worsening=effect)
                        held = classification_holds(sc, size, alpha, args.runs, rng)
                        exact = exact_hold_probability(sc, size, alpha)
                    else:
                        held, exact = regression_holds(RegressionScenario(worsening=effect), size, alpha, args.runs, rng), None
                    rows.append({"task": task, "effect_old": effect, "effect_overall": 0.3 * effect, "size": size,
                                 "alpha": alpha, "runs": args.runs, "holds": int(held.sum()), "rate": float(held.mean()),
                                 "exact": exact})
                    console.log(rows[-1])
    return rows


def detectable(args: argparse.Namespace) -> dict:
    out = {}
    for alpha in args.alphas:
        w = smallest_detectable(lambda x: exact_hold_probability(Scenario(worsening=x), DEFAULT_SIZE, alpha))
        out[f"classification@{alpha}"] = {"old": w, "overall": 0.3 * w}

        def power(x: float) -> float:   # common random numbers: the same seed at every x
            sc = RegressionScenario(worsening=x)
            return float(regression_holds(sc, DEFAULT_SIZE, alpha, args.mde_runs, np.random.default_rng(args.seed)).mean())
        w = smallest_detectable(power, high=1.0)
        out[f"regression@{alpha}"] = {"old": w, "overall": 0.3 * w}
    return out


def through_the_code(args: argparse.Namespace, table: list[dict]) -> list[dict]:
    rows = []
    for task in ("classification", "regression"):
        for effect in (0.0, 0.10):
            for alpha in args.alphas:
                sc = Scenario(worsening=effect) if task == "classification" else RegressionScenario(worsening=effect)
                holds = sum(guard_run(sc, DEFAULT_SIZE, alpha, seed) for seed in range(args.guard_runs))
                low, high = proportion_confint(holds, args.guard_runs, alpha=0.01, method="wilson")
                vec = next(r for r in table if (r["task"], r["effect_old"], r["size"], r["alpha"]) == (task, effect, DEFAULT_SIZE, alpha))
                rows.append({"task": task, "effect_old": effect, "alpha": alpha, "runs": args.guard_runs, "holds": holds,
                             "rate": holds / args.guard_runs, "ci99": [low, high], "vectorised": vec["rate"],
                             "agrees": bool(low <= vec["rate"] <= high)})
    return rows


def print_tables(console: Console, table: list[dict], mde: dict, code: list[dict]) -> None:
    t = Table(title="Hold rate per promotion (null: false hold; effect 0.10 on 30 % old events: power)")
    for c in ("task", "effect (old / overall)", "size", "alpha", "runs", "hold rate", "exact"):
        t.add_column(c, justify="right")
    for r in table:
        exact = "" if r["exact"] is None else f"{r['exact']:.4f}"
        effect = "null" if r["effect_old"] == 0 else f"{r['effect_old']:.2f} / {r['effect_overall']:.2f}"
        t.add_row(r["task"], effect, f"{r['size']:,}", f"{r['alpha']:g}", f"{r['runs']:,}", f"{r['rate']:.4f}", exact)
    console.print(t)
    for key, v in mde.items():
        console.print(f"80 % power at size {DEFAULT_SIZE:,}, {key}: worsening {v['old']:.3f} on old events, {v['overall']:.4f} overall")
    t = Table(title=f"check_forgetting itself at size {DEFAULT_SIZE:,} vs the vectorised rate")
    for c in ("task", "effect", "alpha", "runs", "hold rate", "99 % interval", "vectorised", "agrees"):
        t.add_column(c, justify="right")
    for r in code:
        t.add_row(r["task"], f"{r['effect_old']:.2f}", f"{r['alpha']:g}", str(r["runs"]), f"{r['rate']:.3f}",
                  f"{r['ci99'][0]:.3f}-{r['ci99'][1]:.3f}", f"{r['vectorised']:.4f}", str(r["agrees"]))
    console.print(t)


def over_a_life(table: list[dict]) -> list[dict]:
    null = [r for r in table if r["effect_old"] == 0 and r["size"] == DEFAULT_SIZE]
    rate = lambda r: r["rate"] if r["exact"] is None else r["exact"]  # noqa: E731 - exact when there is one
    return [{"task": r["task"], "alpha": r["alpha"], "per_promotion": rate(r), "promotions": k,
             "expected_false_holds": k * rate(r), "p_at_least_one": 1 - (1 - rate(r)) ** k}
            for r in null for k in (12, 52, 104)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--mde-runs", type=int, default=4_000)
    parser.add_argument("--guard-runs", type=int, default=300)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[500, 2000, 10000])
    parser.add_argument("--alphas", type=lambda s: [float(x) for x in s.split(",")], default=[0.01, 0.05])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/out/forgetting.json"))
    args = parser.parse_args()
    console = Console(width=150)
    started = time.perf_counter()
    table = rates(args, console)
    mde = detectable(args)
    code = through_the_code(args, table)
    life = over_a_life(table)
    print_tables(console, table, mde, code)
    for r in life:
        console.print(f"{r['task']} alpha {r['alpha']:g}: {r['promotions']} promotions, expected false holds "
                      f"{r['expected_false_holds']:.2f}, P(at least one) {r['p_at_least_one']:.3f}")
    console.print(f"{time.perf_counter() - started:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rates": table, "smallest_detectable": mde, "check_forgetting": code,
                                    "life": life, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
