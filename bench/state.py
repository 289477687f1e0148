"""Cost of exactly-once model state (issue 4, "Benchmark").

Run by hand against a real broker (not part of the test suite)::

    .venv/bin/stream-cd kafka up --dir /tmp/bench-kafka --port 19400
    .venv/bin/python bench/state.py --bootstrap 127.0.0.1:19400
    .venv/bin/stream-cd kafka down --dir /tmp/bench-kafka

(i)   Checkpoint size and time per model, for every preset in
      ``stream_cd.learning.specs.PRESETS``: a ``ModelKey`` with that preset as champion
      and a shadow of the same spec (drift adwin, the default comparator) is
      trained on ``--train`` events (Agrawal for classifiers, Friedman for
      regressors); then the bytes of ``dump_state(slot)`` (pickle + HMAC-SHA256,
      what the worker writes to the checkpoints topic), and the time of
      ``dump_state`` and of ``load_state`` (verify + unpickle). No broker needed.
(ii)  Restore time for ``--keys`` model keys from the real broker's compacted
      checkpoints topic: that many signed checkpoints of small logreg slots are
      committed in one ``KafkaTransport.commit`` (one transaction), then what a
      worker does on assignment is timed: ``KafkaTransport.load_checkpoints`` (=
      ``read_checkpoints``), ``load_state`` of every key, and the whole
      ``Worker.restore`` on a fresh pipeline. Measured again after
      ``--rounds`` - 1 more commits of every key (before compaction runs, a reader
      reads every version).
(iii) Throughput of the worker with transactions at the default interval as a
      ratio of at-least-once commits, in one run on the same pre-produced
      events (``bench/throughput.py``'s (b), alternating the modes).

Results are printed and written to ``bench/out/state.json``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import uuid
from pathlib import Path
from time import perf_counter

import orjson
from river.datasets import synth

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402  (bench/throughput.py: the worker runs of (iii))

from consumers.kafka_transport import KafkaTransport  # noqa: E402
from consumers.kafka_worker import checkpoint_topic_spec  # noqa: E402
from consumers.admin import TopicSpec, ensure_topics  # noqa: E402
from producers.replay import replay_to_kafka  # noqa: E402
from stream_cd.config import PipelineConfig  # noqa: E402
from stream_cd.simulate.datasets import generate  # noqa: E402
from stream_cd.pipeline import Pipeline  # noqa: E402
from stream_cd.model_key import ModelKey  # noqa: E402
from stream_cd.learning.specs import PRESETS  # noqa: E402
from stream_cd.pipeline import record_key  # noqa: E402
from stream_cd.state.signing import dump_state, load_state  # noqa: E402
from stream_cd.transport import Checkpoint, Topics  # noqa: E402
from stream_cd.worker import DEFAULT_COMMIT_EVENTS, DEFAULT_COMMIT_SECONDS, Worker  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "state.json"
KEY = b"bench-state-key-0123456789abcdef"


def _stream(task: str, n: int, seed: int) -> list[tuple[dict, object]]:
    if task == "classification":
        return [(e["x"], e["y"]) for e in generate("agrawal", n=n, seed=seed)]
    return [({f"x{k}": float(v) for k, v in x.items()}, float(y))
            for x, y in itertools.islice(synth.Friedman(seed=seed), n)]


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = perf_counter()
        fn()
        times.append(perf_counter() - t)
    return times


# -- (i) size and time per preset --------------------------------------------------

def preset_costs(train: int, seed: int, repeat: int) -> dict:
    streams: dict[str, list] = {}
    results: dict = {}
    for name, (_, task) in PRESETS.items():
        data = streams.setdefault(task, _stream(task, train, seed))
        slot = ModelKey("default", PipelineConfig(model=name, shadow=name, drift="adwin", drop_budget=train + 1))
        start = perf_counter()
        for i, (x, y) in enumerate(data):
            slot.learn(x, y, ts=i)
        train_s = perf_counter() - start
        blob = dump_state(slot, KEY)
        dump_times = _timed(lambda: dump_state(slot, KEY), repeat)
        load_times = _timed(lambda: load_state(blob, KEY, "bench"), repeat)
        restored = load_state(blob, KEY, "bench")
        assert restored.summary() == slot.summary()
        champion_bytes = len(dump_state(slot.champion, KEY))
        results[name] = {
            "task": task, "train_events": len(data), "train_s": train_s,
            "bytes": len(blob), "champion_bytes": champion_bytes,
            "dump_ms": 1e3 * min(dump_times), "dump_ms_median": 1e3 * statistics.median(dump_times),
            "load_ms": 1e3 * min(load_times), "load_ms_median": 1e3 * statistics.median(load_times),
            "metric": slot.summary()["metric"], "challenger": slot.challenger_version,
        }
        r = results[name]
        print(f"  {name:20s} {task:15s} {r['bytes']:>11,d} {r['champion_bytes']:>11,d} "
              f"{r['dump_ms']:8.2f} ({r['dump_ms_median']:7.2f}) {r['load_ms']:8.2f} ({r['load_ms_median']:7.2f})",
              flush=True)
    return results


# -- (ii) restore of many keys from the broker ----------------------------------------

def small_slots(keys: int, events_per_key: int, partitions: int, seed: int) -> list[ModelKey]:
    data = _stream("classification", events_per_key, seed)
    config = PipelineConfig(model="logreg", shadow="none", drift="adwin")
    slots = []
    for i in range(keys):
        slot = ModelKey(f"user-{i:05d}", config)
        for j, (x, y) in enumerate(data):
            slot.learn(x, y, ts=j)
        slot.offsets = {i % partitions: (i // partitions + 1) * events_per_key}
        slots.append(slot)
    return slots


def commit_checkpoints(bootstrap: str, topics: Topics, slots: list[ModelKey], transactional_id: str) -> dict:
    """One transaction holding a signed checkpoint of every slot, as a worker's commit writes it."""
    transport = KafkaTransport(bootstrap, topics.events, f"{transactional_id}-group",
                               checkpoints_topic=topics.checkpoints, transactional_id=transactional_id)
    try:
        t0 = perf_counter()
        checkpoints = [
            Checkpoint(record_key(s.key), dump_state(s, KEY, record_key(s.key)), tuple(sorted(s.offsets))) for s in slots
        ]
        t1 = perf_counter()
        # a worker's transaction always holds its batch's outputs too; it also opens the transaction
        transport.send(topics.decisions, b"bench", b"{}")
        transport.commit(checkpoints)
        t2 = perf_counter()
    finally:
        transport.close()
    return {"dump_s": t1 - t0, "commit_s": t2 - t1, "bytes": sum(len(c.blob) for c in checkpoints)}


def restore_once(bootstrap: str, topics: Topics, partitions: list[int]) -> dict:
    """What a worker does on assignment, timed in parts and as a whole."""
    # the transport alone (its constructor connects; not counted: a worker has one already)
    transport = KafkaTransport(bootstrap, topics.events, f"bench-restore-{uuid.uuid4().hex[:6]}",
                               checkpoints_topic=topics.checkpoints,
                               transactional_id=f"bench-restore-{uuid.uuid4().hex[:6]}")
    try:
        gc.collect()
        t0 = perf_counter()
        found = transport.load_checkpoints(partitions)
        t1 = perf_counter()
        states = {key: load_state(versions[-1][1], KEY, f"model key {key!r}", key) for key, versions in found.items()}
        t2 = perf_counter()
        worker = Worker(transport, Pipeline(PipelineConfig(model="logreg", shadow="none")), topics, state_key=KEY)
        gc.collect()
        t3 = perf_counter()
        positions = worker.restore(partitions)
        t4 = perf_counter()
    finally:
        transport.close()
    return {"keys": len(states), "versions": sum(len(v) for v in found.values()),
            "bytes_read": sum(len(b) for v in found.values() for _, b in v),
            "read_s": t1 - t0, "load_state_s": t2 - t1, "worker_restore_s": t4 - t3,
            "worker_restored": worker.stats.restored, "positions": len(positions)}


def restore_costs(bootstrap: str, keys: int, events_per_key: int, partitions: int, rounds: int,
                  repeat: int, seed: int) -> dict:
    topics = Topics(f"bench-restore-{uuid.uuid4().hex[:8]}")
    ensure_topics(bootstrap, [TopicSpec(topics.events, partitions=partitions), TopicSpec(topics.decisions),
                              checkpoint_topic_spec(topics.checkpoints)])
    t = perf_counter()
    slots = small_slots(keys, events_per_key, partitions, seed)
    print(f"  {keys:,} logreg slots, {events_per_key} events each, built in {perf_counter() - t:.1f} s", flush=True)
    wanted = list(range(partitions))
    results: dict = {"keys": keys, "events_per_key": events_per_key, "partitions": partitions,
                     "checkpoints_topic": topics.checkpoints, "rounds": []}
    txid = f"bench-writer-{uuid.uuid4().hex[:6]}"
    for version in range(1, rounds + 1):
        write = commit_checkpoints(bootstrap, topics, slots, txid)
        if version > 1 and version < rounds:
            continue
        runs = [restore_once(bootstrap, topics, wanted) for _ in range(repeat)]
        assert all(r["keys"] == keys and r["worker_restored"] == keys for r in runs), runs
        row = {"versions_per_key": version, "write": write, "runs": runs}
        for part in ("read_s", "load_state_s", "worker_restore_s"):
            values = [r[part] for r in runs]
            row[part] = min(values)
            row[part + "_median"] = statistics.median(values)
        results["rounds"].append(row)
        print(f"  {version} version(s)/key: commit of {keys:,} checkpoints ({write['bytes'] / 1e6:.2f} MB) "
              f"dump {write['dump_s']:.2f} s + transaction {write['commit_s']:.2f} s; restore: read "
              f"{row['read_s']:.2f} s ({row['read_s_median']:.2f}), load_state {row['load_state_s']:.2f} s "
              f"({row['load_state_s_median']:.2f}), Worker.restore {row['worker_restore_s']:.2f} s "
              f"({row['worker_restore_s_median']:.2f})", flush=True)
    return results


# -- (iii) transactions vs at-least-once ------------------------------------------------

def transaction_ratio(bootstrap: str, n: int, pairs: list[str], repeat: int, seed: int) -> dict:
    raws = [orjson.dumps(e) for e in generate("agrawal", n=n, seed=seed)]
    events_topic = throughput.fresh_events_topic(bootstrap, "state-tx")
    replay_to_kafka(raws, bootstrap, events_topic)
    results: dict = {"n": n, "topic": events_topic, "pairs": {}}
    for pair in pairs:
        runs: dict[str, list[dict]] = {"alo": [], "eos": []}
        for _ in range(repeat):
            for mode in ("alo", "eos"):
                runs[mode].append(throughput.worker_run(bootstrap, events_topic, pair, n, mode))
            print(f"  {pair:30s} alo {runs['alo'][-1]['events_per_s']:9,.0f}/s  eos {runs['eos'][-1]['events_per_s']:9,.0f}/s"
                  f"  ({runs['eos'][-1]['commits']} transactions)", flush=True)
        ratios = [e["events_per_s"] / a["events_per_s"] for e, a in zip(runs["eos"], runs["alo"])]
        best = {m: max(r["events_per_s"] for r in runs[m]) for m in runs}
        results["pairs"][pair] = {
            "alo_events_per_s": best["alo"], "eos_events_per_s": best["eos"],
            "ratio_best": best["eos"] / best["alo"], "ratio_median": statistics.median(ratios),
            "ratios": ratios, "runs": runs}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="needed for (ii) and (iii)")
    parser.add_argument("--parts", default="i,ii,iii", help="which parts to run: i, ii, iii")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train", type=int, default=10_000, help="(i) training events per preset")
    parser.add_argument("--repeat", type=int, default=5, help="(i) dumps/loads timed per preset")
    parser.add_argument("--keys", type=int, default=1000, help="(ii) model keys")
    parser.add_argument("--events-per-key", type=int, default=100, help="(ii) training events per key")
    parser.add_argument("--partitions", type=int, default=4, help="(ii) source partitions the keys spread over")
    parser.add_argument("--rounds", type=int, default=3, help="(ii) commits of every key; restore timed after the first and the last")
    parser.add_argument("--restore-repeat", type=int, default=3)
    parser.add_argument("--tx-n", type=int, default=200_000, help="(iii) events")
    parser.add_argument("--tx-pairs", default="logreg+logreg,hoeffding-tree+hoeffding-tree")
    parser.add_argument("--tx-repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts & {"ii", "iii"} and not args.bootstrap:
        parser.error("parts ii and iii need --bootstrap")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "loadavg_start": os.getloadavg()},
                     "commit_defaults": {"events": DEFAULT_COMMIT_EVENTS, "seconds": DEFAULT_COMMIT_SECONDS}}

    if "i" in parts:
        print(f"(i) checkpoint of one model key (champion + shadow of the same spec, drift adwin), "
              f"trained on {args.train:,} events; times best of {args.repeat} (median)")
        print(f"  {'preset':20s} {'task':15s} {'bytes':>11s} {'champion':>11s} {'dump ms':>18s} {'load ms':>18s}")
        results["presets"] = preset_costs(args.train, args.seed, args.repeat)

    if "ii" in parts:
        print(f"\n(ii) restore of {args.keys:,} model keys from the checkpoints topic "
              f"(best of {args.restore_repeat}, median in brackets)")
        results["restore"] = restore_costs(args.bootstrap, args.keys, args.events_per_key, args.partitions,
                                           args.rounds, args.restore_repeat, args.seed)

    if "iii" in parts:
        pairs = [p for p in args.tx_pairs.split(",") if p]
        print(f"\n(iii) worker throughput, exactly-once (transactions every {DEFAULT_COMMIT_EVENTS:,} events or "
              f"{DEFAULT_COMMIT_SECONDS} s) vs at-least-once (offsets on the same interval), {args.tx_n:,} events")
        tx = transaction_ratio(args.bootstrap, args.tx_n, pairs, args.tx_repeat, args.seed)
        results["transactions"] = tx
        print(f"  {'pair':30s} {'alo/s':>9s} {'eos/s':>9s} {'eos/alo best':>12s} {'median':>7s}")
        for pair, r in tx["pairs"].items():
            print(f"  {pair:30s} {r['alo_events_per_s']:9,.0f} {r['eos_events_per_s']:9,.0f} "
                  f"{r['ratio_best']:12.2f} {r['ratio_median']:7.2f}")

    results["machine"]["loadavg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
