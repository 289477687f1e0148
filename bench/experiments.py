"""A/B tests: their cost per event and the units they need (issue 15, "Benchmark").

Run by hand::

    .venv/bin/python bench/experiments.py [--n 100000] [--runs 200]

(1) Events/s of the in-process pipeline on the same Agrawal stream of requests
    from 1,000 users and their feedback 1,000 events late, logreg champion,
    with only a shadow (logreg) and with an A/B test of a second arm (logreg,
    unit user, learn all) instead, alternating in one run; the ratio A/B over
    shadow.
(2) Units an A/B test of ABExperiment needs to find an arm 2 points better
    (0.82 against 0.80, 50/50, alpha 0.05), looked at after every unit: the
    median over runs, beside the sample size it reports at start and the
    fixed-horizon sample size (statsmodels) of a single look.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import orjson
from rich.progress import track

from stream_cd.config import PipelineConfig
from stream_cd.evaluation.abtest import ABExperiment
from stream_cd.evaluation.definition import ExperimentDefinition
from stream_cd.events import decode_event
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.datasets import generate
from stream_cd.simulate.feedback import delayed_feedback


def stream(n: int) -> list:
    rng = random.Random(1)
    requests = ({**e, "user": f"u{rng.randrange(1000)}"} for e in generate("agrawal", n, seed=3))
    return [decode_event(orjson.dumps(e)) for e in delayed_feedback(requests, 1000, 1000)]


def rate(events: list, ab: bool) -> float:
    pipeline = Pipeline(PipelineConfig(model="logreg", shadow="none" if ab else "logreg", drift="adwin",
                                       drop_budget=None, forgetting="off"))
    if ab:
        pipeline.process(orjson.dumps({"control": "start", "experiment": {
            "name": "ab", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}], "max_sample": 10**9}}), ts=0, offset=0)
    offsets = range(1, len(events) + 1)
    start = time.perf_counter()
    for i in range(0, len(events), 125):
        pipeline.take_batch(events[i:i + 125], [0] * len(events[i:i + 125]), offsets[i:i + 125])
    labels = sum(1 for e in events if e.y is not None)
    return labels / (time.perf_counter() - start)


def units_to_winner(seed: int) -> int | None:
    d = ExperimentDefinition.from_mapping({"name": "b", "kind": "ab", "arms": [{"name": "b", "spec": "logreg"}],
                                           "max_sample": 10**9})
    ab = ABExperiment(d, baseline=0.8, report_every=10**9)
    rng = random.Random(seed)
    for unit in range(1, 200_001):
        arm = "b" if rng.random() < 0.5 else "control"
        verdict = ab.observe(arm, float(rng.random() < (0.82 if arm == "b" else 0.80)), 0)
        if verdict is not None and verdict.action == "promote":
            return unit
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="labeled events of (1) (default: 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="alternations of (1) (default: 3)")
    parser.add_argument("--runs", type=int, default=200, help="simulated experiments of (2) (default: 200)")
    args = parser.parse_args()
    events = stream(args.n)
    ratios = []
    for _ in range(args.repeat):
        shadow, ab = rate(events, ab=False), rate(events, ab=True)
        ratios.append(ab / shadow)
        print(f"(1) shadow only {shadow:9,.0f} labels/s   A/B test {ab:9,.0f} labels/s   ratio {ab / shadow:.2f}", flush=True)
    print(f"(1) median ratio A/B over shadow: {statistics.median(ratios):.2f}")
    reported = ABExperiment(ExperimentDefinition.from_mapping({"name": "b", "kind": "ab",
                                                               "arms": [{"name": "b", "spec": "logreg"}]}), baseline=0.8)
    with ProcessPoolExecutor(max_workers=2) as pool:
        found = list(track(pool.map(units_to_winner, range(args.runs), chunksize=5), total=args.runs,
                           description="(2) simulated A/B tests"))
    hits = [u for u in found if u is not None]
    print(f"(2) 2 points better (0.82 vs 0.80), alpha 0.05, looked at after every unit: found in {len(hits)} of "
          f"{args.runs} runs within 200,000 units; median {statistics.median(hits):,.0f} units; the sample size "
          f"reported at start {reported.sample_size['units']:,}; a single fixed-horizon test "
          f"{reported.sample_size['fixed_horizon_units']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
