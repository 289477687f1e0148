"""Operating characteristics of the anytime-valid paired test (``stream_cd.evaluation.sequential``).

Run by hand (not part of the test suite; no broker)::

    .venv/bin/python bench/sequential.py [--runs 200] [--events 1000000] [--tune]

Simulates champion and challenger erring independently on every labeled event
and looks at :class:`~stream_cd.evaluation.sequential.DiscordantPairsTest`'s
statistic after every pair, through :func:`crossing_table`, the boundary of the
module's own ``log_lr_better`` (the same function the per-event class calls):

* A/A: both err 20 %, ``--events`` events per run: how many runs are ever
  shown better (false promotion) or worse;
* power: champion 20 %, challenger 18 %, ``--power-events`` events: how many
  are promoted, the median events to promotion, and the events a fixed-horizon
  one-sided binomial (McNemar) test of the same power and alpha needs
  (statsmodels' ``NormalIndPower`` on Cohen's h of the discordant win rate,
  one sample, divided by the expected discordant rate);
* ``--tune``: both for each prior ``a`` of ``--grid`` (A/A over ``--tune-events``);
* the per-event cost of ``DiscordantPairsTest.update`` on a 20 % vs 18 % stream.

Arrays are chunked (``--chunk`` events for ``--group`` runs at a time) to bound memory.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from stream_cd.evaluation.sequential import DEFAULT_A, DiscordantPairsTest, crossed, crossing_table


def simulate(rng: np.random.Generator, runs: int, events: int, p_champion: float, p_challenger: float, alpha: float,
             a: float, chunk: int, group: int, progress: Progress, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Events (1-based) to the first "better" and "worse" crossing of each run, -1 for none."""
    table = crossing_table(alpha, a, events)
    first = np.full((2, runs), -1, dtype=np.int64)
    task = progress.add_task(label, total=runs)
    for r0 in range(0, runs, group):
        g = min(group, runs - r0)
        wins, losses = np.zeros((g, 1), np.int64), np.zeros((g, 1), np.int64)
        for e0 in range(0, events, chunk):
            m = min(chunk, events - e0)
            champion_wrong = rng.random((g, m)) < p_champion
            challenger_wrong = rng.random((g, m)) < p_challenger
            w = np.cumsum(champion_wrong & ~challenger_wrong, axis=1) + wins
            l = np.cumsum(challenger_wrong & ~champion_wrong, axis=1) + losses
            for side, hit in enumerate((crossed(w, l, table), crossed(l, w, table))):
                new = hit.any(axis=1) & (first[side, r0:r0 + g] < 0)
                first[side, r0:r0 + g][new] = e0 + hit.argmax(axis=1)[new] + 1
            wins, losses = w[:, -1:], l[:, -1:]
        progress.advance(task, g)
    return first[0], first[1]


def fixed_horizon_events(p_champion: float, p_challenger: float, alpha: float, power: float) -> float:
    """Events a one-sided binomial test on the discordant pairs needs for ``power`` at ``alpha``."""
    win, loss = p_champion * (1 - p_challenger), p_challenger * (1 - p_champion)
    h = proportion_effectsize(win / (win + loss), 0.5)
    n = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=0, alternative="larger")
    return n / (win + loss)


def median_events(first: np.ndarray) -> float:
    return float(np.median(np.where(first > 0, first, np.inf).astype(float)))


def per_event_seconds(a: float, alpha: float, n: int = 1_000_000) -> float:
    rng = np.random.default_rng(0)
    pairs = list(zip((rng.random(n) < 0.20).astype(float).tolist(), (rng.random(n) < 0.18).astype(float).tolist()))
    test = DiscordantPairsTest(alpha=alpha, a=a)
    update = test.update
    start = time.perf_counter()
    for champion, challenger in pairs:
        update(champion, challenger)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000, help="events per A/A run")
    parser.add_argument("--power-events", type=int, default=20_000, help="horizon of the power study")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--a", type=float, default=DEFAULT_A, help="Beta(a, a) prior")
    parser.add_argument("--tune", action="store_true", help="also run the grid of priors")
    parser.add_argument("--grid", default="1,10,30,100,300,1000")
    parser.add_argument("--tune-events", type=int, default=100_000, help="events per A/A run of the grid")
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--group", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    console = Console(width=150)
    p0, p1 = 0.20, 0.18
    rows = []
    started = time.perf_counter()
    with Progress(console=console) as progress:
        priors = [float(x) for x in args.grid.split(",")] if args.tune else [args.a]
        for a in priors:
            aa_events = args.tune_events if args.tune else args.events
            rng = np.random.default_rng(args.seed)
            aa_better, aa_worse = simulate(rng, args.runs, aa_events, p0, p0, args.alpha, a, args.chunk, args.group,
                                           progress, f"A/A a={a:g} {aa_events:,} events")
            rng = np.random.default_rng(args.seed + 1)
            better, worse = simulate(rng, args.runs, args.power_events, p0, p1, args.alpha, a, args.chunk,
                                     args.group, progress, f"power a={a:g}")
            rows.append((a, aa_events, (aa_better > 0).mean(), (aa_worse > 0).mean(), (better > 0).mean(),
                         median_events(better), (worse > 0).mean()))
    elapsed = time.perf_counter() - started
    table = Table(title=f"DiscordantPairsTest, alpha {args.alpha}, {args.runs} runs each ({elapsed:.0f} s)")
    for column in ("a", "A/A events", "A/A shown better", "A/A shown worse",
                   f"power {p1:.2f} vs {p0:.2f} in {args.power_events:,}", "median events to promotion",
                   "fixed-horizon events, same power (<= 0.99)", "shown worse"):
        table.add_column(column, justify="right")
    for a, aa_events, fp, fw, power, median, worse in rows:
        fixed = fixed_horizon_events(p0, p1, args.alpha, min(power, 0.99)) if power > 0.01 else math.nan
        table.add_row(f"{a:g}", f"{aa_events:,}", f"{fp:.4f} ({fp * args.runs:.0f})",
                      f"{fw:.4f} ({fw * args.runs:.0f})", f"{power:.3f}", f"{median:,.0f}", f"{fixed:,.0f}",
                      f"{worse:.3f}")
    console.print(table)
    console.print(f"fixed-horizon events at power 0.80: {fixed_horizon_events(p0, p1, args.alpha, 0.80):,.0f}")
    seconds = per_event_seconds(args.a, args.alpha)
    console.print(f"DiscordantPairsTest.update: {seconds * 1e9:.0f} ns per event ({1 / seconds:,.0f} events/s)")


if __name__ == "__main__":
    main()
