"""Memory of session adaptation under a flood of distinct sessions (issue 5).

Streams N labeled events, each of a session never seen before, through the
pipeline with the session bound at --max-sessions, and prints the resident
memory every tenth of the way: it should level off once the bound is reached,
while the oldest sessions are evicted.

    .venv/bin/python bench/sessions_memory.py [--n 1000000] [--max-sessions 10000] [--events-per-session 1]

With ``--events-per-session 8`` each session has 8 events, so sessions also
report to the learned population prior (issue 18) at their 4th and 8th event.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time

import orjson

from stream_cd.config import PipelineConfig
from stream_cd.pipeline import Pipeline
from stream_cd.simulate.population import sessions_population


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--max-sessions", type=int, default=10_000)
    parser.add_argument("--events-per-session", type=int, default=1)
    args = parser.parse_args()

    pipeline = Pipeline(PipelineConfig(model="logreg", drift="none", max_sessions=args.max_sessions))
    source = sessions_population(2_000, 30, seed=3)  # the features and labels; sessions are renamed
    step = args.n // 10
    started = time.perf_counter()
    print(f"{'events':>9} {'sessions':>9} {'evicted':>9} {'RSS MiB':>8} {'events/s':>9}")
    for i, event in enumerate(itertools.islice(itertools.cycle(source), args.n)):
        event = {**event, "session": f"s{i // args.events_per_session}", "ts": 1_732_600_000_000 + i}
        pipeline.process(orjson.dumps(event), ts=event["ts"], offset=i)
        if (i + 1) % step == 0:
            stats = pipeline.models["default"].sessions.stats()
            rate = (i + 1) / (time.perf_counter() - started)
            print(f"{i + 1:>9} {stats['sessions']:>9} {stats['evicted']:>9} {rss_mib():>8.1f} {rate:>9.0f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    prior = pipeline.slots["default"].sessions.prior
    print(f"peak RSS {peak:.1f} MiB with at most {args.max_sessions} sessions; "
          f"learned prior: {prior.draws:,} draws, {len(prior.spreads())} spreads")


if __name__ == "__main__":
    main()
