"""Throughput and latency of the worker against River's bare loop (issue 3, "Benchmark").

Run by hand against a real broker (not part of the test suite)::

    .venv/bin/stream-cd kafka up --dir /tmp/bench-kafka --port 19400
    .venv/bin/python bench/throughput.py --bootstrap 127.0.0.1:19400 [--n 200000]
    .venv/bin/stream-cd kafka down --dir /tmp/bench-kafka

On the same ``--n`` Agrawal events, for each champion+shadow pair:

(a) River's bare loop on events decoded beforehand (dicts in memory): champion
    and shadow both ``predict_one`` and ``learn_one``;
(b) ``Worker`` + ``KafkaTransport`` + ``Pipeline(drift="adwin")`` on the
    events produced beforehand into a fresh one-partition topic, in two
    delivery modes, both committing at the default interval
    (DEFAULT_COMMIT_EVENTS / DEFAULT_COMMIT_SECONDS): ``alo`` (at-least-once:
    no state key; flush, then commit offsets) and ``eos`` (exactly-once: state
    key, checkpoints topic, one transaction per commit); each with the fetch
    process (the worker's default) or, as ``alo-inline`` / ``eos-inline``,
    fetching and decoding in the worker's own process. Joining the group (and
    starting the fetch process) is done first; the clock runs
    from the first poll until ``Worker.run`` returns (its final commit included);

With ``--feedback-delay D``, (b) also runs each mode as ``MODE-fb`` on a
second topic where every label arrives as a feedback event D requests after
its request (2n messages for the same n labels); its rate is labels learned
per second, so its b/a compares the same learning with the bare loop.

then the ratios b/a and eos/alo, a per-event time breakdown of (b), and (c)
the latency from each message's produce timestamp (CreateTime) to its
learning, at a steady load of half of the slower mode's logreg+logreg rate,
produced by a separate process, in each mode.
Results are printed and written to ``bench/out/throughput.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from time import perf_counter

import orjson

from consumers.admin import TopicSpec, ensure_topics
from consumers.kafka_transport import KafkaTransport
from consumers.kafka_worker import checkpoint_topic_spec
from producers.replay import replay_to_kafka
from stream_cd.config import PipelineConfig
from stream_cd.simulate.datasets import generate
from stream_cd.simulate.feedback import delayed_feedback
from stream_cd.events import decode_event
from stream_cd.pipeline import Pipeline
from stream_cd.learning.specs import ModelSpec
from stream_cd.transport import Topics
from stream_cd.worker import DEFAULT_COMMIT_EVENTS, DEFAULT_COMMIT_SECONDS, Worker

OUT = Path(__file__).resolve().parent / "out" / "throughput.json"
PAIRS = ["logreg+logreg", "hoeffding-tree+hoeffding-tree"]


# -- (a) the bare loop ---------------------------------------------------------

def bare_loop(pair: str, xs: list[dict], ys: list) -> float:
    """Events/s of champion and shadow predicting and learning every event."""
    champion_name, shadow_name = pair.split("+")
    champion = ModelSpec.parse(champion_name).build()
    shadow = ModelSpec.parse(shadow_name).build()
    c_predict, c_learn = champion.predict_one, champion.learn_one
    s_predict, s_learn = shadow.predict_one, shadow.learn_one
    start = perf_counter()
    for x, y in zip(xs, ys):
        c_predict(x)
        s_predict(x)
        s_learn(x, y)
        c_learn(x, y)
    return len(xs) / (perf_counter() - start)


# -- (b) the worker through Kafka -----------------------------------------------

class TimedTransport:
    """Wraps a transport to add up the time spent in poll and in commit; delegates the rest."""

    def __init__(self, inner: KafkaTransport) -> None:
        self.inner = inner
        self.poll_s = 0.0
        self.commit_s = 0.0

    def poll(self, max_records, timeout_s):
        t = perf_counter()
        try:
            return self.inner.poll(max_records, timeout_s)
        finally:
            self.poll_s += perf_counter() - t

    def commit(self, *args, **kwargs):
        t = perf_counter()
        try:
            return self.inner.commit(*args, **kwargs)
        finally:
            self.commit_s += perf_counter() - t

    def __getattr__(self, name):
        return getattr(self.inner, name)


def join_group(transport: KafkaTransport, timeout_s: float = 20.0) -> float:
    """Join the consumer group and rewind, so that timing starts at a first poll with data ready.

    The worker now polls rebalance events itself (``transport.rebalance_events()``); the
    "assigned" event of this join is taken here, which is what the worker would do with it
    for a fresh group (nothing to restore: seek to the beginning), so that joining stays
    outside the clock in both delivery modes.
    """
    start = perf_counter()
    fetcher = getattr(transport, "_fetcher", None)
    if fetcher is not None and not fetcher.wait_ready(60):  # its start-up is not throughput
        raise RuntimeError("the fetch process did not start")
    while not transport.assignment():
        if perf_counter() - start > timeout_s:
            raise RuntimeError("no partition assigned")
        transport.poll(1, 0.5)  # subscribes on first use; a record read here is read again after the rewind
    transport.rebalance_events()
    for partition in transport.assignment():
        transport.seek_committed(partition)  # a fresh group has committed nothing: from the beginning
    return perf_counter() - start


STATE_KEY = b"bench-state-key-0123456789abcdef"  # exactly-once mode signs checkpoints with it
MODES = {
    "alo": "at-least-once, commits at the default interval, fetch process (the worker's default)",
    "eos": "exactly-once, transactions at the default interval, fetch process (the worker's default)",
    "alo-inline": "at-least-once, fetching and decoding in the worker's own process",
    "eos-inline": "exactly-once, fetching and decoding in the worker's own process",
}


def worker_run(bootstrap: str, events_topic: str, pair: str, n: int, mode: str, *, on_outcome=None,
               ready=None, profiler=None, messages: int | None = None, observer=None, on_worker=None) -> dict:
    """Run the worker over ``n`` messages of ``events_topic``; return its rate and time split.

    ``mode`` "alo": no state key, the worker commits at the same interval as "eos" (producer flush +
    synchronous offset commit). ``mode`` "eos": state key, checkpoints topic and
    transactional id; the worker commits (pickle + sign changed slots, one transaction
    with decisions, checkpoints and offsets) every DEFAULT_COMMIT_EVENTS events or
    DEFAULT_COMMIT_SECONDS seconds. Each run has its own topic prefix (decisions,
    dead letters, checkpoints) and group, on the shared pre-produced events topic.
    """
    mode = mode.removesuffix("-fb")  # the same mode on the delayed-feedback topic
    messages = n if messages is None else messages  # n labels in this many messages
    if mode not in MODES:
        raise SystemExit(f"mode {mode!r} is not one of {', '.join(MODES)}")
    champion, shadow = pair.split("+")
    inline = mode.endswith("-inline")
    # drop_budget past n: an identical shadow is never better, and the default budget (20,000
    # pairs) would drop it, leaving the worker one model where the bare loop has two.
    pipeline = Pipeline(PipelineConfig(model=champion, shadow=shadow, drift="adwin", drop_budget=n + 1))
    eos = mode.startswith("eos")
    tag = uuid.uuid4().hex[:8]
    topics = Topics(f"bench-{mode}-{tag}", events=events_topic)
    specs = [TopicSpec(topics.decisions), TopicSpec(topics.dead_letter)]
    if eos:
        specs.append(checkpoint_topic_spec(topics.checkpoints))
    ensure_topics(bootstrap, specs)
    for attempt in range(3):  # kafka-python 3.0 now and then never sees its assignment: retry in a new group
        group = f"bench-{mode}-{pair}-{tag}-{attempt}"
        inner = KafkaTransport(bootstrap, events_topic, group,
                               checkpoints_topic=topics.checkpoints if eos else None,
                               transactional_id=f"{group}.w0" if eos else None,
                               fetch_process=not inline)
        try:
            join_s = join_group(inner)
            break
        except RuntimeError:
            inner.close()
            if attempt == 2:
                raise
    transport = TimedTransport(inner)
    worker = Worker(transport, pipeline, topics, state_key=STATE_KEY if eos else None,
                    batch_size=2000, on_outcome=on_outcome, observer=observer)
    if on_worker is not None:
        on_worker(worker, group)
    # time the worker's whole commit (pickling + signing checkpoints + the transport's commit)
    commit_s = [0.0]
    inner_commit = worker.commit

    def timed_commit(wait: bool = True, **options) -> None:
        t = perf_counter()
        try:
            inner_commit(wait, **options)
        finally:
            commit_s[0] += perf_counter() - t

    worker.commit = timed_commit  # type: ignore[method-assign]
    try:
        if ready is not None:
            ready.set()
        if profiler is not None:
            profiler.enable()
        start = perf_counter()
        stats = worker.run(max_events=messages, idle_exit=30, end_of_input_exits=False)
        elapsed = perf_counter() - start  # includes the final commit
        if profiler is not None:
            profiler.disable()
    finally:
        transport.close()
    model = pipeline.summary()["models"]["default"]
    assert stats.consumed == messages and model["learned"] == n, (stats, model)
    return {
        "mode": mode,
        "events_per_s": n / elapsed,
        "seconds": elapsed,
        "join_s": join_s,
        "batches": stats.batches,
        "commits": stats.commits,
        "checkpoints_written": stats.checkpoints_written,
        "decisions": stats.decisions,
        "poll_us": 1e6 * transport.poll_s / n,
        "commit_us": 1e6 * commit_s[0] / n,
        "kafka_commit_us": 1e6 * transport.commit_s / n,
        "state_dump_us": 1e6 * (commit_s[0] - transport.commit_s) / n,
        "pipeline_us": 1e6 * (elapsed - transport.poll_s - commit_s[0]) / n,
        "accuracy": model["metric"]["value"],
        "challenger_at_end": model["challenger_version"],
    }


def fresh_events_topic(bootstrap: str, tag: str) -> str:
    topic = f"bench-{tag}-{uuid.uuid4().hex[:8]}.events"
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=1)])
    return topic


# -- decoding costs -------------------------------------------------------------

def decode_costs(raws: list[bytes]) -> dict:
    """Microseconds per event of orjson.loads alone and of stream_cd's decode_event."""
    start = perf_counter()
    for raw in raws:
        orjson.loads(raw)
    loads = perf_counter() - start
    start = perf_counter()
    for raw in raws:
        decode_event(raw)
    decode = perf_counter() - start
    n = len(raws)
    return {"orjson_us": 1e6 * loads / n, "validation_us": 1e6 * (decode - loads) / n}


# -- (c) latency ------------------------------------------------------------------

def _produce(path: str, bootstrap: str, topic: str, rate: float, go, result) -> None:
    """Child process: wait for the worker, then replay the file at ``rate`` events/s."""
    raws = Path(path).read_bytes().splitlines()
    go.wait()
    start = perf_counter()
    sent = replay_to_kafka(raws, bootstrap, topic, rate=rate)
    result.put((sent, perf_counter() - start))


def latency_run(bootstrap: str, raws: list[bytes], rate: float, seconds: float, mode: str) -> dict:
    total = int(rate * seconds)
    lines = [raws[i % len(raws)] for i in range(total)]
    events_topic = fresh_events_topic(bootstrap, "latency")
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as f:
        f.write(b"\n".join(lines))
    ctx = mp.get_context("spawn")
    go, result = ctx.Event(), ctx.Queue()
    producer = ctx.Process(target=_produce, args=(f.name, bootstrap, events_topic, rate, go, result))
    producer.start()
    latencies: list[float] = []
    record = latencies.append

    def on_outcome(message, outcome) -> None:
        record(time.time() * 1000 - message.timestamp)

    try:
        worker_run(bootstrap, events_topic, "logreg+logreg", total, mode, on_outcome=on_outcome, ready=go)
        sent, produce_s = result.get(timeout=60)
    finally:
        producer.join(timeout=30)
        os.unlink(f.name)
    q = statistics.quantiles(latencies, n=1000)
    return {"mode": mode, "target_rate": rate, "produced_rate": sent / produce_s, "events": total,
            "seconds": produce_s, "p50_ms": q[499], "p99_ms": q[989], "p999_ms": q[998], "max_ms": max(latencies)}


# -- main ---------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternate a, b-alo and b-eos this many times; report the best and the median")
    parser.add_argument("--modes", default="alo,eos,alo-inline",
                        help=f"modes of (b), from {', '.join(MODES)}")
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="0 skips (c)")
    parser.add_argument("--latency-repeat", type=int, default=2)
    parser.add_argument("--profile", choices=list(MODES), default=None,
                        help="also run (b) logreg+logreg in this mode under cProfile; writes bench/out/profile_worker_<mode>.txt")
    parser.add_argument("--feedback-delay", type=int, default=0, metavar="D",
                        help="also run every mode on a stream whose labels come as feedback D requests late (0: not)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if args.feedback_delay:
        modes += [f"{m}-fb" for m in modes]
    pairs = [p for p in args.pairs.split(",") if p]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    print(f"generating {args.n:,} Agrawal events (seed {args.seed}) ...", flush=True)
    raws = [orjson.dumps(e) for e in generate("agrawal", n=args.n, seed=args.seed)]
    decoded = [orjson.loads(r) for r in raws]  # the dicts the worker sees
    xs, ys = [e["x"] for e in decoded], [e["y"] for e in decoded]
    del decoded
    # The events held here for (a) are millions of objects a deployed worker does not have;
    # keep the garbage collector's full passes in (b) from walking them.
    gc.freeze()

    events_topic = fresh_events_topic(args.bootstrap, "throughput")
    start = perf_counter()
    replay_to_kafka(raws, args.bootstrap, events_topic)
    print(f"produced into {events_topic} (1 partition) at {args.n / (perf_counter() - start):,.0f} events/s")
    fb_topic = None
    if args.feedback_delay:
        fb_raws = [orjson.dumps(e) for e in delayed_feedback(generate("agrawal", n=args.n, seed=args.seed),
                                                             args.feedback_delay, args.feedback_delay)]
        fb_topic = fresh_events_topic(args.bootstrap, "feedback")
        replay_to_kafka(fb_raws, args.bootstrap, fb_topic)
        print(f"produced {len(fb_raws):,} requests and feedback (delay {args.feedback_delay}) into {fb_topic}")

    results: dict = {"n": args.n, "topic": events_topic, "partitions": 1, "repeat": args.repeat,
                     "commit_defaults": {"events": DEFAULT_COMMIT_EVENTS, "seconds": DEFAULT_COMMIT_SECONDS},
                     "modes": {m: MODES[m.removesuffix("-fb")] + (" (delayed feedback)" if m.endswith("-fb") else "") for m in modes}, "pairs": {},
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "loadavg_start": os.getloadavg()}}
    for pair in pairs:
        a_runs: list[float] = []
        b_runs: dict[str, list[dict]] = {m: [] for m in modes}
        for _ in range(args.repeat):
            a_runs.append(bare_loop(pair, xs, ys))
            line = f"  {pair:30s} a {a_runs[-1]:9,.0f}/s"
            for mode in modes:
                fb = mode.endswith("-fb")
                b_runs[mode].append(worker_run(args.bootstrap, fb_topic if fb else events_topic, pair, args.n, mode,
                                               messages=2 * args.n if fb else args.n))
                line += f"   b-{mode} {b_runs[mode][-1]['events_per_s']:9,.0f}/s"
            print(line, flush=True)
        a = max(a_runs)
        r: dict = {"a_events_per_s": a, "a_median": _median(a_runs), "a_runs": a_runs, "model_us": 1e6 / a, "b": {}}
        for mode in modes:
            rates = [b["events_per_s"] for b in b_runs[mode]]
            best = max(b_runs[mode], key=lambda b: b["events_per_s"])
            # per-repetition ratios: a and b measured side by side
            ratios = [b["events_per_s"] / a_ for b, a_ in zip(b_runs[mode], a_runs)]
            r["b"][mode] = {"events_per_s": best["events_per_s"], "median": _median(rates), "runs": b_runs[mode],
                            "best": best, "ratio_b_over_a": best["events_per_s"] / a,
                            "ratio_median": _median(ratios), "ratios": ratios}
        if "alo" in b_runs and "eos" in b_runs:  # both with the fetch process
            eos_over_alo = [e["events_per_s"] / l["events_per_s"] for e, l in zip(b_runs["eos"], b_runs["alo"])]
            r["eos_over_alo"] = {"best": r["b"]["eos"]["events_per_s"] / r["b"]["alo"]["events_per_s"],
                                 "median": _median(eos_over_alo), "runs": eos_over_alo}
        results["pairs"][pair] = r

    costs = decode_costs(raws)
    results["decode"] = costs

    print(f"\n(a) bare loop vs (b) worker through Kafka, events/s (best of {args.repeat}; median in brackets)")
    header = f"{'pair':30s} {'a bare':>16s}"
    for mode in modes:
        header += f" {'b ' + mode:>18s} {'b/a':>11s}"
    if "alo" in modes and "eos" in modes:
        header += f" {'eos/alo':>11s}"
    print(header)
    for pair, r in results["pairs"].items():
        line = f"{pair:30s} {r['a_events_per_s']:7,.0f} ({r['a_median']:6,.0f})"
        for mode in modes:
            b = r["b"][mode]
            line += f" {b['events_per_s']:8,.0f} ({b['median']:7,.0f}) {b['ratio_b_over_a']:4.2f} ({b['ratio_median']:4.2f})"
        if "eos_over_alo" in r:
            line += f" {r['eos_over_alo']['best']:4.2f} ({r['eos_over_alo']['median']:4.2f})"
        print(line)

    print("\nwhere (b)'s time goes (best run), microseconds per event:")
    print(f"{'pair':30s} {'mode':10s} {'total':>6s} {'poll':>6s} {'commit':>6s} {'(pickle':>7s} {'kafka)':>6s} "
          f"{'orjson':>6s} {'valid.':>6s} {'models':>6s} {'slot+rest':>9s} {'commits':>7s}")
    for pair, r in results["pairs"].items():
        for mode in modes:
            b = r["b"][mode]["best"]
            # with the fetch process, decoding happens there: not in this process's time
            orjson_us, validation_us = (costs["orjson_us"], costs["validation_us"]) if mode.endswith("-inline") else (0.0, 0.0)
            rest = b["pipeline_us"] - orjson_us - validation_us - r["model_us"]
            r["b"][mode]["breakdown_us"] = {
                "total": 1e6 / b["events_per_s"], "kafka_poll": b["poll_us"], "commit": b["commit_us"],
                "state_dump": b["state_dump_us"], "kafka_commit": b["kafka_commit_us"],
                "orjson": orjson_us, "validation": validation_us,
                "models": r["model_us"], "slot_and_rest": rest}
            print(f"{pair:30s} {mode:10s} {1e6 / b['events_per_s']:6.1f} {b['poll_us']:6.1f} {b['commit_us']:6.1f} "
                  f"{b['state_dump_us']:7.1f} {b['kafka_commit_us']:6.1f} {orjson_us:6.1f} "
                  f"{validation_us:6.1f} {r['model_us']:6.1f} {rest:9.1f} {b['commits']:7d}")

    if args.latency_seconds > 0 and "logreg+logreg" in results["pairs"]:
        lr = results["pairs"]["logreg+logreg"]["b"]
        modes = [m for m in modes if not m.endswith("-fb")]  # latency is measured on labeled events
        # one load for every mode: half of the slower mode's best rate
        rate = min(lr[m]["events_per_s"] for m in modes) / 2
        results["latency"] = {"rate": rate, "runs": {m: [] for m in modes}}
        print(f"\n(c) latency produce -> learned, logreg+logreg at {rate:,.0f} events/s "
              f"(half the slower mode's maximum) for {args.latency_seconds:.0f} s, producer in another process")
        for _ in range(args.latency_repeat):
            for mode in modes:
                lat = latency_run(args.bootstrap, raws, rate, args.latency_seconds, mode)
                results["latency"]["runs"][mode].append(lat)
                print(f"  {mode}: produced at {lat['produced_rate']:,.0f}/s; p50 {lat['p50_ms']:.1f} ms, "
                      f"p99 {lat['p99_ms']:.1f} ms, p99.9 {lat['p999_ms']:.1f} ms, max {lat['max_ms']:.1f} ms",
                      flush=True)
        for mode in modes:
            runs = results["latency"]["runs"][mode]
            results["latency"][mode] = {
                "p50_ms_best": min(x["p50_ms"] for x in runs), "p50_ms_median": _median([x["p50_ms"] for x in runs]),
                "p99_ms_best": min(x["p99_ms"] for x in runs), "p99_ms_median": _median([x["p99_ms"] for x in runs])}

    if args.profile:
        import cProfile
        import io
        import pstats

        profiler = cProfile.Profile()
        worker_run(args.bootstrap, events_topic, "logreg+logreg", args.n, args.profile, profiler=profiler)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        path = args.out.parent / f"profile_worker_{args.profile}.txt"
        path.write_text(text.getvalue())
        print(f"\ncProfile of (b) logreg+logreg ({args.profile}) written to {path}")

    results["machine"]["loadavg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
