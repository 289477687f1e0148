"""The cost of the worker's Prometheus metrics (issue 17): events/s with them against without, in one run.

    .venv/bin/stream-cd kafka up --dir /tmp/bench-kafka --port 19400
    .venv/bin/python bench/metrics_cost.py --bootstrap 127.0.0.1:19400 [--n 200000] [--repeat 3]

The worker of ``bench/throughput.py`` (b) runs over the same pre-produced
events, alternating: without an observer, and with what ``--metrics-port``
adds (a :class:`~stream_cd.observe.metrics.WorkerMetrics` fed by the worker's
hooks, its HTTP server, the lag client) while another process, as Prometheus
would be, scrapes ``/metrics`` every ``--scrape-every`` seconds (1 s: fifteen
times Prometheus' default) and parses each answer. The order of the two alternates between repetitions. The
ratio with/without of each repetition is printed; the issue asks for at least 0.95.
Results go to ``bench/out/metrics_cost.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import multiprocessing as mp
import urllib.request
from pathlib import Path
from time import perf_counter

import orjson
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import fresh_events_topic, worker_run  # noqa: E402

from consumers.lag import EndOffsets  # noqa: E402
from producers.replay import replay_to_kafka  # noqa: E402
from stream_cd.broker.config import free_port  # noqa: E402
from stream_cd.observe.exporter import render, serve_metrics  # noqa: E402
from stream_cd.observe.metrics import WorkerMetrics  # noqa: E402
from stream_cd.simulate.datasets import generate  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "metrics_cost.json"


def _scraper(port: int, every_s: float, stop, result) -> None:
    """Child process: scrape and parse until told to stop; put the counts."""
    counts = {"scrapes": 0, "errors": 0}
    while not stop.wait(every_s):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                families = list(text_string_to_metric_families(answer.read().decode()))
            counts["scrapes"] += 1
            counts["families"] = len(families)
        except OSError as err:
            counts["errors"] += 1
            counts["last_error"] = repr(err)
    result.put(counts)


def with_metrics(bootstrap: str, topic: str, pair: str, n: int, mode: str, scrape_every: float) -> dict:
    """One run of the worker with the metrics observer, its server and a scraper."""
    port = free_port()
    holder: dict = {}

    def on_worker(worker, group) -> None:  # the lag client reads the worker's own group
        metrics.lag_source = holder["lag"] = EndOffsets(bootstrap, topic, group)
        metrics.held = set(worker.transport.assignment())  # joined before the clock: no rebalance hook comes

    metrics = WorkerMetrics(info={"worker_id": "bench", "delivery": mode})
    hook_s = [0.0]
    learned = metrics.learned

    def timed_learned(timestamps, now_s) -> None:  # the one hook called every batch
        t = perf_counter()
        learned(timestamps, now_s)
        hook_s[0] += perf_counter() - t

    metrics.learned = timed_learned  # type: ignore[method-assign]
    server = serve_metrics(metrics, port, "127.0.0.1")
    ctx = mp.get_context("spawn")
    stop, answer = ctx.Event(), ctx.Queue()
    scraper = ctx.Process(target=_scraper, args=(port, scrape_every, stop, answer), daemon=True)
    scraper.start()
    try:
        result = worker_run(bootstrap, topic, pair, n, mode, observer=metrics, on_worker=on_worker)
    finally:
        stop.set()
        counts = answer.get(timeout=30)
        scraper.join(10)
        server.shutdown()
        server.server_close()
        if "lag" in holder:
            holder["lag"].close()
    assert metrics.latency.count == n, (metrics.latency.count, n)
    t = perf_counter()
    render(metrics)
    scrape_ms = 1000 * (perf_counter() - t)
    return {**result, **counts, "latency_count": metrics.latency.count, "hook_us_per_event": 1e6 * hook_s[0] / n,
            "render_ms": scrape_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap address")
    parser.add_argument("--n", type=int, default=200_000, help="events per run (default: 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs, alternating their order (default: 3)")
    parser.add_argument("--pair", default="logreg+logreg", help="champion+shadow (default: logreg+logreg)")
    parser.add_argument("--mode", default="eos", help="delivery mode of bench/throughput.py (default: eos, the worker's default)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes (default: 1)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default: {OUT})")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    raws = [orjson.dumps(e) for e in generate("agrawal", n=args.n, seed=42)]
    topic = fresh_events_topic(args.bootstrap, "metrics-cost")
    replay_to_kafka(raws, args.bootstrap, topic)
    del raws
    gc.collect()
    print(f"{args.n:,} Agrawal events in {topic}; {args.pair}, {args.mode}, scrapes every {args.scrape_every} s", flush=True)
    runs = []
    for i in range(args.repeat):
        order = ("without", "with") if i % 2 == 0 else ("with", "without")
        pair_runs = {}
        for which in order:
            if which == "with":
                pair_runs[which] = with_metrics(args.bootstrap, topic, args.pair, args.n, args.mode, args.scrape_every)
            else:
                pair_runs[which] = worker_run(args.bootstrap, topic, args.pair, args.n, args.mode)
        ratio = pair_runs["with"]["events_per_s"] / pair_runs["without"]["events_per_s"]
        runs.append({**pair_runs, "ratio": ratio, "order": order})
        print(f"  {i + 1}: without {pair_runs['without']['events_per_s']:9,.0f}/s   with {pair_runs['with']['events_per_s']:9,.0f}/s"
              f"   ({pair_runs['with']['scrapes']} scrapes, {pair_runs['with']['errors']} failed; hook "
              f"{pair_runs['with']['hook_us_per_event']:.3f} us/event, a scrape's series {pair_runs['with']['render_ms']:.1f} ms)"
              f"   with/without {ratio:.3f}",
              flush=True)
    ratios = [r["ratio"] for r in runs]
    best_with = max(r["with"]["events_per_s"] for r in runs)
    best_without = max(r["without"]["events_per_s"] for r in runs)
    summary = {"ratio_median": statistics.median(ratios), "ratio_of_bests": best_with / best_without,
               "ratios": ratios, "best_with": best_with, "best_without": best_without}
    print(f"with/without: median of the pairs {summary['ratio_median']:.3f}, best against best {summary['ratio_of_bests']:.3f}"
          f" (target >= 0.95)")
    args.out.write_text(json.dumps({"n": args.n, "pair": args.pair, "mode": args.mode, "scrape_every_s": args.scrape_every,
                                    "loadavg": os.getloadavg(), "summary": summary, "runs": runs}, indent=2, default=str) + "\n")
    print(f"results in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
