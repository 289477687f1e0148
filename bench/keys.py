"""Exactly-once state for many model keys (issue 14, "Benchmark").

Run by hand against a real broker (not part of the test suite)::

    .venv/bin/python bench/keys.py --bootstrap 127.0.0.1:9092 [--keys 1,1000,10000] [--repeat 1]
        [--before /path/to/a/checkout/of/the/code/before]

For each number of model keys K: 200,000 Agrawal events (seed 42), keyed round-robin over
K keys (the event's ``key`` field and the Kafka message key), are produced into a fresh
4-partition topic. Then one ``stream-cd worker --model logreg --shadow logreg`` runs over
them in a subprocess, exactly-once and at-least-once alternately (``--repeat`` times; and,
with ``--before DIR``, the same worker of the code in DIR, alternating with this one).
The worker subprocess is this script (``_worker``): it times the worker's batches and
commits from inside and then runs the worker CLI unchanged, so it reports

* the processing time from the first batch to the end of the last (intermediate commits
  included), and apart from it the tail after it (the final commit, which snapshots every
  changed key), and the subprocess's wall time (start-up and joining the group included);
* the worker process's peak RSS (``VmHWM``) and the fetch process's;
* the checkpoint records a commit handed to the transport, and their bytes.

After each code's exactly-once run of the largest K, ``_restore`` times what a worker does
when the partitions are assigned: a fresh ``KafkaTransport`` + ``Pipeline`` and
``Worker.restore(all partitions)``, the bytes it read, its RSS growth, and (a second
restore in the same process) its tracemalloc peak.

Results are printed and written to ``bench/out/keys.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from time import perf_counter

HERE = Path(__file__).resolve()
OUT = HERE.parent / "out" / "keys.json"
KEY = "bench-keys-state-key-0123456789abcdef"
PARTITIONS = 4


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


# -- the worker subprocess: the CLI, timed from inside ---------------------------------------

def child_worker(result_path: str, cli_args: list[str]) -> None:
    """Run ``stream-cd worker`` with timing hooks on the worker's batches and commits."""
    from consumers.kafka_transport import KafkaTransport
    from stream_cd import cli
    from stream_cd.worker import Worker

    marks: dict = {"first_batch": None, "last_batch_end": None, "commits": [], "records": 0, "bytes": 0}
    process, commit, transport_commit = Worker._process, Worker.commit, KafkaTransport.commit

    def timed_process(self, messages):
        if marks["first_batch"] is None:
            marks["first_batch"] = perf_counter()
        try:
            return process(self, messages)
        finally:
            marks["last_batch_end"] = perf_counter()
            marks["hwm_processing"] = _status("VmHWM")  # the peak until the last batch, before the final commit

    def timed_commit(self, *args, **kwargs):
        t = perf_counter()
        try:
            return commit(self, *args, **kwargs)
        finally:
            marks["commits"].append((t, perf_counter()))

    def counted_commit(self, checkpoints=(), **kwargs):
        marks["records"] += len(checkpoints)
        marks["bytes"] += sum(len(cp.blob or b"") + len(cp.key.encode()) for cp in checkpoints)
        return transport_commit(self, checkpoints, **kwargs)

    Worker._process, Worker.commit, KafkaTransport.commit = timed_process, timed_commit, counted_commit
    start = perf_counter()
    try:
        code = cli.main(["worker", *cli_args])
    except SystemExit as stop:
        code = stop.code
    end = perf_counter()
    last = marks["last_batch_end"]
    final = marks["commits"][-1]
    Path(result_path).write_text(json.dumps({
        "exit": code,
        "in_process_s": end - start,
        "join_s": marks["first_batch"] - start,
        "process_s": last - marks["first_batch"],
        "tail_s": end - last,  # after the last batch: the final commit, the summary
        "final_commit_s": final[1] - final[0],
        "commit_s": sum(b - a for a, b in marks["commits"]),
        "commit_calls": len(marks["commits"]),
        "records_written": marks["records"],
        "record_bytes": marks["bytes"],
        "worker_hwm": _status("VmHWM"),
        "worker_hwm_processing": marks["hwm_processing"],
        "fetch_process_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }))


def child_restore(result_path: str, bootstrap: str, prefix: str, events_topic: str) -> None:
    """Time a fresh worker's restore of every partition, as on assignment after a rebalance."""
    import tracemalloc

    from consumers.kafka_transport import KafkaTransport
    from stream_cd.config import PipelineConfig
    from stream_cd.pipeline import Pipeline
    from stream_cd.transport import Topics
    from stream_cd.worker import Worker

    topics = Topics(prefix, events=events_topic)
    tag = uuid.uuid4().hex[:6]
    transport = KafkaTransport(bootstrap, events_topic, f"{prefix}.restore-{tag}",
                               checkpoints_topic=topics.checkpoints, transactional_id=f"{prefix}.restore-{tag}")
    counted = [0]
    load = transport.load_checkpoints
    if not hasattr(transport, "restore_bytes_read"):  # the code before: every version of every key, in memory
        def load_counted(partitions, *args):
            found = load(partitions, *args)
            counted[0] += sum(len(blob) + len(key.encode()) for key, versions in found.items() for _, blob in versions)
            return found
        transport.load_checkpoints = load_counted
    runs = []
    try:
        for traced in (False, True):
            pipeline = Pipeline(PipelineConfig(model="logreg", shadow="logreg"))
            worker = Worker(transport, pipeline, topics, state_key=KEY.encode())
            counted[0] = 0
            if hasattr(transport, "restore_bytes_read"):
                transport.restore_bytes_read = 0
            gc.collect()
            rss_before = _status("VmRSS")
            if traced:
                tracemalloc.start()
            t = perf_counter()
            positions = worker.restore(list(range(PARTITIONS)))
            seconds = perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1] if traced else None
            tracemalloc.stop()
            runs.append({"traced": traced, "seconds": seconds, "restored": worker.stats.restored,
                         "refused": worker.stats.refused_checkpoints, "positions": positions,
                         "bytes_read": getattr(transport, "restore_bytes_read", 0) or counted[0],
                         "rss_before": rss_before, "rss_after": _status("VmRSS"), "hwm_after": _status("VmHWM"),
                         "tracemalloc_peak": peak, "model_keys": len(pipeline.summary()["models"])})
            del worker, pipeline
    finally:
        transport.close()
    Path(result_path).write_text(json.dumps(runs, default=str))


# -- the parent: topics, runs, tables ---------------------------------------------------------

def _child(code_dir: str, args: list[str], stdout, stderr) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": code_dir, "STREAM_CD_STATE_KEY": KEY}
    return subprocess.run([sys.executable, str(HERE), *args], env=env, stdout=stdout, stderr=stderr, check=False)


def produce(bootstrap: str, code_dir: str, keys: int, n: int, seed: int) -> str:
    sys.path.insert(0, code_dir)
    import orjson

    from consumers.admin import TopicSpec, ensure_topics
    from producers.replay import replay_to_kafka
    from stream_cd.simulate.datasets import generate

    topic = f"bench-keys-{keys}-{uuid.uuid4().hex[:8]}.events"
    ensure_topics(bootstrap, [TopicSpec(topic, partitions=PARTITIONS)])
    raws = []
    for i, event in enumerate(generate("agrawal", n=n, seed=seed)):
        event["key"] = f"shop-{i % keys:05d}"
        raws.append(orjson.dumps(event))
    t = perf_counter()
    replay_to_kafka(raws, bootstrap, topic)
    print(f"  produced {n:,} events over {keys:,} keys into {topic} ({PARTITIONS} partitions) "
          f"in {perf_counter() - t:.1f} s", flush=True)
    return topic


def run_worker(bootstrap: str, code: str, code_dir: str, topic: str, mode: str, n: int, drop_budget: str,
               workdir: Path, extra: list[str] = ()) -> dict:
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-keys-{code}-{mode}-{tag}"
    result = workdir / f"{prefix}.json"
    cli = ["--bootstrap", bootstrap, "--topic", topic, "--topic-prefix", prefix, "--group", f"{prefix}.workers",
           "--worker-id", f"w-{tag}", "--delivery", "exactly-once" if mode == "eos" else "at-least-once",
           "--model", "logreg", "--shadow", "logreg", "--drop-budget", drop_budget,
           "--max-events", str(n), "--idle-exit", "60", "--json", *extra]
    with open(workdir / f"{prefix}.out", "wb") as out, open(workdir / f"{prefix}.err", "wb") as err:
        t = perf_counter()
        done = _child(code_dir, ["_worker", "--result", str(result), "--", *cli], out, err)
        wall = perf_counter() - t
    if done.returncode != 0 or not result.exists():
        raise SystemExit(f"the {code} {mode} worker failed ({done.returncode}): see {workdir / prefix}.err")
    r = json.loads(result.read_text())
    summary = json.loads((workdir / f"{prefix}.out").read_text().splitlines()[-1])["summary"]
    w = summary["worker"]
    assert w["consumed"] == n, w
    r.update({"code": code, "mode": mode, "prefix": prefix, "wall_s": wall, "worker": w,
              "model_keys": len(summary["models"]), "snapshots": w["checkpoints_written"],
              "events_per_s": n / r["process_s"], "events_per_s_committed": n / (r["process_s"] + r["tail_s"]),
              "record_bytes_per_event": r["record_bytes"] / n, "loadavg": os.getloadavg()})
    return r


def run_restore(bootstrap: str, code: str, code_dir: str, run: dict, topic: str, workdir: Path) -> list[dict]:
    result = workdir / f"{run['prefix']}.restore.json"
    with open(workdir / f"{run['prefix']}.restore.err", "wb") as err:
        done = _child(code_dir, ["_restore", "--result", str(result), bootstrap, run["prefix"], topic], None, err)
    if done.returncode != 0:
        raise SystemExit(f"the {code} restore failed: see {workdir / run['prefix']}.restore.err")
    return json.loads(result.read_text())


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def summarize(results: dict) -> None:
    """Best and median per (code, K, mode); ratios to K=1 exactly-once; RSS per key."""
    for code, by_k in results["runs"].items():
        table = results["table"].setdefault(code, {})
        for k, by_mode in by_k.items():
            row = table.setdefault(k, {})
            for mode, runs in by_mode.items():
                rates = [r["events_per_s"] for r in runs]
                best = max(runs, key=lambda r: r["events_per_s"])
                row[mode] = {"events_per_s": best["events_per_s"], "median": statistics.median(rates),
                             "process_s": best["process_s"], "tail_s": best["tail_s"],
                             "final_commit_s": best["final_commit_s"], "wall_s": best["wall_s"],
                             "committed_events_per_s": max(r["events_per_s_committed"] for r in runs),
                             "worker_hwm": max(r["worker_hwm"] for r in runs),
                             "worker_hwm_processing": max(r.get("worker_hwm_processing", 0) for r in runs),
                             "fetch_process_maxrss": max(r["fetch_process_maxrss"] for r in runs),
                             "snapshots": best["snapshots"], "records_written": best["records_written"],
                             "record_bytes_per_event": best["record_bytes_per_event"], "commits": best["worker"]["commits"]}
        one = table.get("1", {}).get("eos")
        for k, row in table.items():
            if one and "eos" in row:
                row["eos"]["ratio_to_1"] = row["eos"]["events_per_s"] / one["events_per_s"]
                row["eos"]["ratio_to_1_median"] = row["eos"]["median"] / one["median"]
                if k != "1":
                    row["eos"]["rss_per_key"] = (row["eos"]["worker_hwm"] - one["worker_hwm"]) / int(k)


def print_tables(results: dict) -> None:
    print(f"\nevents/s from the first batch to the end of the last (best of the runs, median in brackets); "
          f"'+final' adds the tail (final commit); seconds of the best run; peak RSS of the worker process, and until its last batch")
    print(f"{'code':7s} {'keys':>6s} {'mode':4s} {'events/s':>17s} {'x K=1':>11s} {'s':>6s} {'+final s':>8s} "
          f"{'wall s':>7s} {'RSS':>9s} {'(to last)':>9s} {'RSS/key':>9s} {'snapshots':>9s} {'records':>8s} {'B/event':>8s}")
    for code, table in results["table"].items():
        for k, row in table.items():
            for mode, m in row.items():
                ratio = f"{m['ratio_to_1']:.2f} ({m['ratio_to_1_median']:.2f})" if "ratio_to_1" in m else ""
                per_key = f"{m['rss_per_key'] / 1024:,.1f} kB" if "rss_per_key" in m else ""
                print(f"{code:7s} {int(k):6,d} {mode:4s} {m['events_per_s']:8,.0f} ({m['median']:6,.0f}) {ratio:>11s} "
                      f"{m['process_s']:6.1f} {m['tail_s']:8.2f} {m['wall_s']:7.1f} {_mb(m['worker_hwm']):>9s} "
                      f"{_mb(m['worker_hwm_processing']):>9s} {per_key:>9s} {m['snapshots']:9,d} {m['records_written']:8,d} {m['record_bytes_per_event']:8,.0f}")
    for code, runs in results.get("restore", {}).items():
        for r in runs:
            grew = r["hwm_after"] - r["rss_before"]
            traced = f", tracemalloc peak {_mb(r['tracemalloc_peak'])}" if r["traced"] else f", RSS grew by up to {_mb(grew)}"
            print(f"restore ({code}, {results['restore_keys']:,} keys, all {PARTITIONS} partitions): "
                  f"{r['seconds']:.2f} s, {r['restored']:,} records restored, {r['bytes_read'] / 1e6:,.1f} MB read{traced}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--keys", default="1,1000,10000")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="exactly-once and at-least-once runs per K and code")
    parser.add_argument("--modes", default="eos,alo")
    parser.add_argument("--before", metavar="DIR", help="also run the worker of the code in DIR, alternating")
    parser.add_argument("--before-repeat-max-keys", type=int, default=1,
                        help="repetitions of the code before at the largest K (its exactly-once run is slow)")
    parser.add_argument("--drop-budget", default="none",
                        help="the worker's --drop-budget: none keeps every key's identical shadow learning all along")
    parser.add_argument("--worker-args", default="",
                        help="more flags for this code's worker, e.g. '--snapshot-every-seconds 10'")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    keys = [int(k) for k in args.keys.split(",")]
    modes = args.modes.split(",")
    codes = {"after": str(HERE.parent.parent)}
    if args.before:
        codes["before"] = str(Path(args.before).resolve())
    workdir = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    results: dict = {"n": args.n, "partitions": PARTITIONS, "repeat": args.repeat, "codes": codes,
                     "drop_budget": args.drop_budget, "worker_args": args.worker_args, "workdir": str(workdir), "runs": {c: {} for c in codes},
                     "table": {}, "restore": {}, "restore_keys": max(keys), "sections": [],
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "loadavg_start": os.getloadavg()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k in keys:
        section = {"keys": k, "loadavg_start": os.getloadavg()}
        print(f"\n{k:,} model keys (load average {section['loadavg_start'][0]:.2f})", flush=True)
        topic = produce(args.bootstrap, codes["after"], k, args.n, args.seed)
        for rep in range(args.repeat):
            for code, code_dir in codes.items():
                if code == "before" and k == max(keys) and rep >= args.before_repeat_max_keys:
                    continue
                for mode in modes:
                    extra = args.worker_args.split() if code == "after" else []
                    r = run_worker(args.bootstrap, code, code_dir, topic, mode, args.n, args.drop_budget, workdir, extra)
                    results["runs"][code].setdefault(str(k), {}).setdefault(mode, []).append(r)
                    print(f"  {code:6s} {mode}: {r['events_per_s']:8,.0f} events/s ({r['process_s']:.1f} s + "
                          f"{r['tail_s']:.2f} s tail, final commit {r['final_commit_s']:.2f} s; wall {r['wall_s']:.1f} s), "
                          f"RSS {_mb(r['worker_hwm'])} ({_mb(r.get('worker_hwm_processing', 0))} to the last batch), {r['snapshots']:,} snapshots, {r['records_written']:,} "
                          f"records, {r['record_bytes_per_event']:,.0f} B/event; load {r['loadavg'][0]:.2f}", flush=True)
                    if k == max(keys) and mode == "eos" and code not in results["restore"]:
                        results["restore"][code] = run_restore(args.bootstrap, code, code_dir, r, topic, workdir)
                        first = results["restore"][code][0]
                        print(f"  {code:6s} restore of every partition: {first['seconds']:.2f} s, "
                              f"{first['restored']:,} records, {first['bytes_read'] / 1e6:,.1f} MB read", flush=True)
        section["loadavg_end"] = os.getloadavg()
        results["sections"].append(section)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    summarize(results)
    results["machine"]["loadavg_end"] = os.getloadavg()
    print_tables(results)
    for s in results["sections"]:
        print(f"load average, {s['keys']:,} keys: start {s['loadavg_start']}, end {s['loadavg_end']}")
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":  # the worker subprocess: _worker --result PATH -- CLI ARGS
        sep = sys.argv.index("--")
        child_worker(sys.argv[3], sys.argv[sep + 1:])
    elif len(sys.argv) > 1 and sys.argv[1] == "_restore":  # _restore --result PATH BOOTSTRAP PREFIX TOPIC
        child_restore(sys.argv[3], *sys.argv[4:7])
    else:
        sys.exit(main())
