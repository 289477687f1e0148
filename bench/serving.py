"""Request to readable prediction, through the broker and through ``stream-cd serve`` (issue 13).

Run by hand against a real broker (not part of the test suite)::

    .venv/bin/stream-cd kafka up --dir /tmp/bench-kafka --port 19400
    .venv/bin/python bench/serving.py --bootstrap 127.0.0.1:19400
    .venv/bin/stream-cd kafka down --dir /tmp/bench-kafka

(i) Kafka: for each delivery mode and rate, a fresh topic prefix and a ``stream-cd
    worker --publish-predictions`` subprocess (logreg, fetch process, default
    commit interval), warmed on ``--warm`` labeled Agrawal events. This process
    then produces prediction requests with ids at a steady rate (open loop: request
    i is due at i / rate) and a reader process (read_committed, like any subscriber
    of decisions) notes when each prediction becomes readable. The producer and the
    reader use kafka-python, or librdkafka (confluent-kafka) with
    ``--load-clients``: a load that leaves the two cores to what it measures. Latency: from just
    before the request's ``send`` to the reader's poll returning its prediction,
    both on this machine's wall clock.
(ii) HTTP: a ``stream-cd serve`` subprocess in front of such a worker; ``--clients``
    keep-alive connections (aiohttp) send ``POST /predict`` at a steady total rate;
    latency is the client's, from sending the request to reading the answer.

Results are printed as tables and written to ``bench/out/serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing as mp
import os
import shlex
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumers.admin import TopicSpec, ensure_topics  # noqa: E402
from stream_cd.simulate.datasets import generate  # noqa: E402

OUT = REPO / "bench" / "out" / "serving.json"
STATE_KEY = "bench-state-key-0123456789abcdef"
WARM_REQUESTS = 150  # three seconds at 50/s before the clock starts


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_cd.cli", *args]


MODE_NAMES = {"alo": "at-least-once", "eos": "exactly-once",
              "at-least-once": "at-least-once", "exactly-once": "exactly-once"}
WORKER_ARGS: list[str] = []  # --worker-args: more flags for every plain worker


def start_worker(bootstrap: str, prefix: str, mode: str, log, diagnose: Path | None = None) -> subprocess.Popen:
    if diagnose is not None:  # the same worker, instrumented (see worker_child)
        return subprocess.Popen([sys.executable, __file__, "--child", str(diagnose), "--bootstrap", bootstrap,
                                 "--modes", mode, "--out", prefix], stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    return subprocess.Popen(
        cli("worker", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--model", "logreg", "--drift", "none",
            "--delivery", mode, "--worker-id", "bench", "--publish-predictions", *WORKER_ARGS),
        stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env={**os.environ, "STREAM_CD_STATE_KEY": STATE_KEY},
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentiles(latencies_ms: list[float]) -> dict:
    q = statistics.quantiles(latencies_ms, n=1000)
    return {"n": len(latencies_ms), "p50_ms": q[499], "p99_ms": q[989], "max_ms": max(latencies_ms)}


# -- where a worker's time goes ---------------------------------------------------------------------

def worker_child(bootstrap: str, prefix: str, mode: str, out: Path) -> None:
    """``stream-cd worker --publish-predictions`` as the CLI runs it, instrumented: the time from
    each request's CreateTime to its outcome, every poll's wait and batch size, every commit
    and every flush of the predictions, every garbage collection; written to ``out`` on SIGTERM."""
    import gc
    import signal
    import threading

    import consumers.kafka_worker as kw
    from stream_cd.config import PipelineConfig
    from stream_cd.pipeline import Pipeline
    from stream_cd.transport import Topics

    stats: dict[str, list] = {"to_outcome_ms": [], "poll": [], "commit_ms": [], "flush_ms": [], "gc_ms": [],
                              "slow": [], "outcome_at": []}
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            ms = 1000 * (time.perf_counter() - gc_started[0])
            stats["gc_ms"].append((info["generation"], ms))
            if ms > 5:
                stats["slow"].append((time.time(), f"gc{info['generation']}", ms))

    gc.callbacks.append(on_gc)

    class Timed:
        def __init__(self, inner) -> None:
            self.inner = inner

        def poll(self, max_records, timeout_s):
            t = time.perf_counter()
            batch = self.inner.poll(max_records, timeout_s)
            ms = 1000 * (time.perf_counter() - t)
            stats["poll"].append((round(ms, 3), len(batch)))
            if ms > 20 and batch:
                stats["slow"].append((time.time(), "poll", ms))
            return batch

        def commit(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return self.inner.commit(*args, **kwargs)
            finally:
                ms = 1000 * (time.perf_counter() - t)
                stats["commit_ms"].append(ms)
                if ms > 5:
                    stats["slow"].append((time.time(), "commit", ms))

        def __getattr__(self, name):
            return getattr(self.inner, name)

    class Worker(kw.Worker):
        def __init__(self, transport, *args, **kwargs) -> None:
            super().__init__(Timed(transport), *args, **kwargs)

    class Publisher(kw.PredictionPublisher):
        def flush(self, timeout_s=None):
            t = time.perf_counter()
            try:
                super().flush(timeout_s)
            finally:
                stats["flush_ms"].append(1000 * (time.perf_counter() - t))

    kw.Worker, kw.PredictionPublisher = Worker, Publisher
    land, keep = kw.KafkaTransport._land, kw.KafkaTransport._keep_membership
    stats["land_ms"], stats["membership_ms"] = [], []

    def timed(fn, name):
        def wrapper(self, *args):
            t = time.perf_counter()
            try:
                return fn(self, *args)
            finally:
                ms = 1000 * (time.perf_counter() - t)
                if ms > 1:
                    stats[name].append(ms)
                if ms > 5:
                    stats["slow"].append((time.time(), name, ms))
        return wrapper

    kw.KafkaTransport._land = timed(land, "land_ms")
    kw.KafkaTransport._keep_membership = timed(keep, "membership_ms")

    def on_outcome(message, outcome) -> None:
        if outcome.served is not None and outcome.event is not None and outcome.event.y is None:
            now = time.time()
            stats["to_outcome_ms"].append(now * 1000 - message.timestamp)
            stats["outcome_at"].append(now)

    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    pipeline = Pipeline(PipelineConfig(model="logreg", drift="none"), record_predictions=True)
    eos = mode == "exactly-once"
    kw.run_kafka_worker(bootstrap, Topics(prefix), f"{prefix}.workers", pipeline,
                        state_key=STATE_KEY.encode() if eos else None, worker_id="bench", stop=stop_event,
                        publish_predictions=True, on_outcome=on_outcome,
                        fetch_process=os.environ.get("BENCH_FETCH_INLINE") != "1")
    out.write_text(json.dumps(stats))


def _around_worst(stats: dict) -> list:
    """The slow events in the second before the slowest request was processed (ms before it)."""
    if not stats["to_outcome_ms"]:
        return []
    worst = max(range(len(stats["to_outcome_ms"])), key=stats["to_outcome_ms"].__getitem__)
    at, took = stats["outcome_at"][worst], stats["to_outcome_ms"][worst]
    return [(round(1000 * (at - t)), name, round(ms, 1)) for t, name, ms in stats["slow"] if 0 <= at - t < took / 1000 + 0.05]


def summarise_diagnosis(path: Path) -> dict:
    stats = json.loads(path.read_text())
    stats["to_outcome_ms"] = stats["to_outcome_ms"][WARM_REQUESTS:]
    stats["outcome_at"] = stats["outcome_at"][WARM_REQUESTS:]
    polls = stats["poll"]
    data = [(ms, n) for ms, n in polls if n]
    summary = {
        "worker_to_outcome": percentiles(stats["to_outcome_ms"]) if len(stats["to_outcome_ms"]) > 10 else None,
        "polls": len(polls), "polls_with_data": len(data),
        "batch_size_mean": statistics.mean(n for _, n in data) if data else 0,
        "batch_size_max": max((n for _, n in data), default=0),
        "poll_ms_max": max((ms for ms, _ in polls), default=0),
        "slow_polls_over_20ms": sorted(ms for ms, n in polls if ms > 20 and n)[-10:],
        "commits": len(stats["commit_ms"]), "commit_ms_max": max(stats["commit_ms"], default=0),
        "flush_ms_max": max(stats["flush_ms"], default=0),
        "land_over_1ms": sorted(round(x, 1) for x in stats["land_ms"])[-8:],
        "membership_over_1ms": sorted(round(x, 1) for x in stats["membership_ms"])[-8:],
        "worst_to_outcome_at": sorted(enumerate(stats["to_outcome_ms"]), key=lambda p: -p[1])[:8],
        "around_worst": _around_worst(stats),
        "gc": len(stats["gc_ms"]), "gc_ms_max": max((ms for _, ms in stats["gc_ms"]), default=0),
        "gc_over_5ms": [(g, round(ms, 1)) for g, ms in stats["gc_ms"] if ms > 5][:10],
    }
    return summary


# -- the reader: a process of its own --------------------------------------------------------

def _read(bootstrap: str, topic: str, ready, stop_reading, count, out, client: str) -> None:
    """Note when each id is first readable on ``topic``, from its end on, until ``stop_reading``;
    put id -> wall-clock time on ``out``."""
    batches = _librdkafka_batches if client == "librdkafka" else _kafka_python_batches
    seen: dict[str, float] = {}
    for values in batches(bootstrap, topic, ready, stop_reading):
        now = time.time()
        for value in values:
            ident = orjson.loads(value)["id"]
            if ident is not None and ident not in seen:  # labeled events' records have no id
                seen[ident] = now
        count.value = len(seen)
    out.put(seen)


def _kafka_python_batches(bootstrap: str, topic: str, ready, stop_reading) -> Iterator[list[bytes]]:
    """The message values of ``topic`` from its end, read_committed, as kafka-python's polls return them."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed")
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)
    ready.set()
    try:
        while not stop_reading.is_set():
            polled = consumer.poll(timeout_ms=100, max_records=5000)
            yield from ([record.value for record in records] for records in polled.values())
            yield []
    finally:
        consumer.close()


def _librdkafka_batches(bootstrap: str, topic: str, ready, stop_reading) -> Iterator[list[bytes]]:
    """:func:`_kafka_python_batches` with confluent-kafka's consumer (librdkafka, in C): a
    subscriber that costs the two cores little; the same settings otherwise."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "socket.nagle.disable": True})
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions) or [0]
    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions]
    consumer.assign([TopicPartition(topic, p, end) for p, end in zip(partitions, ends)])
    ready.set()
    try:
        while not stop_reading.is_set():
            first = consumer.poll(0.1)  # consume() would wait for all of num_messages, or its timeout
            messages = [] if first is None else [first, *consumer.consume(num_messages=5000, timeout=0)]
            yield [message.value() for message in messages if message.error() is None]
    finally:
        consumer.close()


class Reader:
    """The predictions topic read in another process; ``seen`` maps id -> wall-clock time.
    ``client`` is the Kafka client it reads with (see :data:`LOAD_CLIENTS`)."""

    def __init__(self, bootstrap: str, topic: str, client: str = "kafka-python") -> None:
        ctx = mp.get_context("spawn")
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._count = ctx.Value("l", 0, lock=False)
        args = (bootstrap, topic, self._ready, self._stop, self._count, self._out, client)
        self._process = ctx.Process(target=_read, args=args, daemon=True)
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the reader did not start")

    def wait_for(self, expected: int, timeout_s: float = 60.0) -> None:
        """Wait until ``expected`` ids were seen in all, or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._count.value < expected and time.monotonic() < deadline:
            time.sleep(0.05)  # a bench's progress check, not a test's synchronisation

    def finish(self, expected: int) -> dict[str, float]:
        """Wait until ``expected`` ids were seen in all; id -> when first seen."""
        self.wait_for(expected)
        self._stop.set()
        seen = self._out.get(timeout=60)
        self._process.join(10)
        return seen


# -- (i) through the broker ----------------------------------------------------------------------

LOAD_CLIENTS = ("kafka-python", "librdkafka")  # what the load's producer and reader are written with


class _LibrdkafkaProducer:
    """confluent-kafka's producer (librdkafka) behind the calls this bench makes of kafka-python's."""

    def __init__(self, bootstrap: str, linger_ms: int) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms,
                                   "socket.nagle.disable": True})

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.produce(topic, value=value, key=key)
        self._producer.poll(0)  # delivery reports, so its queue does not fill

    def flush(self) -> None:
        left = self._producer.flush(60)
        if left:
            raise RuntimeError(f"{left} requests were not delivered in 60 s")

    close = flush


def load_producer(bootstrap: str, client: str, linger_ms: int = 1):
    """The producer of the load: kafka-python's, or librdkafka's through confluent-kafka."""
    if client == "librdkafka":
        return _LibrdkafkaProducer(bootstrap, linger_ms)
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=linger_ms)


def requests(n: int, seed: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"{tag}-{i}", orjson.dumps({"key": "default", "id": f"{tag}-{i}", "x": e["x"]}))
            for i, e in enumerate(generate("agrawal", n, seed=seed))]


def paced_send(producer, topic: str, batch: list[tuple[str, bytes]], rate: float) -> dict[str, float]:
    """Send each request when due (open loop); return id -> wall-clock time just before its send."""
    sent: dict[str, float] = {}
    start = time.perf_counter()
    wall0 = time.time() - start
    for i, (ident, value) in enumerate(batch):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)
        now = time.perf_counter()
        sent[ident] = wall0 + now
        producer.send(topic, key=b"default", value=value)
    producer.flush()
    return sent


def kafka_run(bootstrap: str, mode: str, rate: float, seconds: float, warm: int, seed: int, logdir: Path,
              diagnose: bool = False, client: str = "kafka-python") -> dict:
    prefix = f"bench-serving-{mode}-{int(rate)}-{uuid.uuid4().hex[:6]}"
    events, predictions = f"{prefix}.events", f"{prefix}.predictions"
    ensure_topics(bootstrap, [TopicSpec(events), TopicSpec(predictions)])
    producer = load_producer(bootstrap, client)
    for e in generate("agrawal", warm, seed=seed + 1):
        e.pop("id", None)  # only requests have ids, so the reader counts only them
        producer.send(events, key=b"default", value=orjson.dumps(e))
    producer.flush()
    log = open(logdir / f"{prefix}.log", "wb")
    diagnosis = logdir / f"{prefix}.diagnosis.json" if diagnose else None
    worker = start_worker(bootstrap, prefix, mode, log, diagnosis)
    reader = Reader(bootstrap, predictions, client)
    requests_reader = Reader(bootstrap, events, client) if diagnose else None  # the hop into the worker, read beside it
    try:
        # warm: a worker's first second (joining, its first commits) is not what is measured; once
        # three seconds of requests have their predictions, it is in its steady state
        _wait_first(bootstrap, predictions, worker)
        warm_up = requests(WARM_REQUESTS, seed + 2, "warm")
        paced_send(producer, events, warm_up, 50)
        reader.wait_for(len(warm_up))
        n = int(rate * seconds)
        batch = requests(n, seed, "r")
        sent = paced_send(producer, events, batch, rate)
        elapsed = max(sent.values()) - min(sent.values())
        seen = reader.finish(n + len(warm_up))
        if requests_reader is not None:
            arrived = requests_reader.finish(n + len(warm_up))
    finally:
        stop(worker)
        producer.close()
        log.close()
    latencies = [1000 * (seen[i] - t) for i, t in sent.items() if i in seen]
    result = {"mode": mode, "client": client, "rate": rate, "sent_rate": n / elapsed if elapsed else None,
              "missing": sum(1 for i in sent if i not in seen), **percentiles(latencies)}
    if diagnosis is not None:
        result["diagnosis"] = summarise_diagnosis(diagnosis)
        result["diagnosis"]["requests_readable"] = percentiles([1000 * (arrived[i] - t) for i, t in sent.items() if i in arrived])
    return result


def bare_run(bootstrap: str, rate: float, seconds: float, seed: int, client: str = "kafka-python") -> dict:
    """The floor: requests produced and read back from the same topic, no worker between."""
    topic = f"bench-serving-bare-{int(rate)}-{uuid.uuid4().hex[:6]}.events"
    ensure_topics(bootstrap, [TopicSpec(topic)])
    producer = load_producer(bootstrap, client)
    reader = Reader(bootstrap, topic, client)
    batch = requests(int(rate * seconds), seed, "r")
    sent = paced_send(producer, topic, batch, rate)
    seen = reader.finish(len(batch))
    producer.close()
    latencies = [1000 * (seen[i] - t) for i, t in sent.items() if i in seen]
    return {"mode": "no worker", "client": client, "rate": rate, "sent_rate": rate, "missing": len(sent) - len(latencies), **percentiles(latencies)}


def _wait_first(bootstrap: str, topic: str, worker: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Wait until the warm-up request's prediction is on the topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    deadline = time.monotonic() + timeout_s
    try:
        while not consumer.end_offsets([tp])[tp]:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not answer the warm-up request")
            time.sleep(0.1)
    finally:
        consumer.close()


# -- (ii) through stream-cd serve over HTTP ----------------------------------------------------------

async def _http_load(url: str, batch: list[tuple[str, bytes]], rate: float, clients: int) -> list[float]:
    import aiohttp

    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                due, body = item
                async with session.post(f"{url}/predict", data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}: {await r.text()}")
                latencies.append(1000 * (time.perf_counter() - due))

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        start = time.perf_counter()
        for i, (_, body) in enumerate(batch):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((time.perf_counter(), body))
        for _ in tasks:
            queue.put_nowait(None)
        await asyncio.gather(*tasks)
    return latencies


def http_run(bootstrap: str, mode: str, rate: float, seconds: float, clients: int, warm: int, seed: int,
             logdir: Path) -> dict:
    prefix = f"bench-http-{mode}-{int(rate)}-{uuid.uuid4().hex[:6]}"
    events = f"{prefix}.events"
    ensure_topics(bootstrap, [TopicSpec(events), TopicSpec(f"{prefix}.predictions")])
    producer = load_producer(bootstrap, "kafka-python", linger_ms=5)
    for e in generate("agrawal", warm, seed=seed + 1):
        producer.send(events, key=b"default", value=orjson.dumps(e))
    producer.close()
    log = open(logdir / f"{prefix}.log", "wb")
    worker = start_worker(bootstrap, prefix, mode, log)
    command = cli("serve", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--port", "0")
    if os.environ.get("BENCH_SERVE"):
        command = [sys.executable, os.environ["BENCH_SERVE"], bootstrap, prefix]
    server = subprocess.Popen(command,
                              stdout=subprocess.PIPE, stderr=log, cwd=REPO)
    try:
        line = server.stdout.readline().decode()
        match = re.search(r"http://\S+", line)
        if not match:
            raise RuntimeError(f"serve printed {line!r}")
        url = match.group(0)
        asyncio.run(_http_load(url, requests(20, seed + 2, "warm"), 5, 1))  # the worker is there and warm
        n = int(rate * seconds)
        start = time.perf_counter()
        latencies = asyncio.run(_http_load(url, requests(n, seed, "h"), rate, clients))
        elapsed = time.perf_counter() - start
    finally:
        stop(server)
        stop(worker)
        log.close()
    return {"mode": mode, "rate": rate, "clients": clients, "achieved_rate": n / elapsed, **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--modes", default="at-least-once,exactly-once",
                        help="delivery modes, comma-separated: at-least-once (alo), exactly-once (eos)")
    parser.add_argument("--rates", default="50,1000,5000")
    parser.add_argument("--seconds", default="20,10,6", help="seconds of load at each rate")
    parser.add_argument("--http-rate", type=float, default=500.0, help="0 skips (ii)")
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32, help="keep-alive HTTP connections")
    parser.add_argument("--warm", type=int, default=5000, help="labeled events the worker learns first")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--diagnose", action="store_true",
                        help="(i) with an instrumented worker: where its time goes (polls, commits, flushes, GC)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the one-hop floor (requests read back from their own topic, no worker)")
    parser.add_argument("--load-clients", default="kafka-python", metavar="CLIENTS",
                        help="(i): the Kafka clients the load's producer and reader use, comma-separated, each run in "
                             "turn: kafka-python (as the worker) or librdkafka (confluent-kafka, in C: a load that "
                             "leaves the two cores to the worker and the broker)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", default="", metavar="FLAGS",
                        help="more flags for the worker, e.g. --worker-args='--fetch-inline' (with '=' when FLAGS starts "
                             "with a dash and has no space; not with --diagnose)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    WORKER_ARGS[:] = shlex.split(args.worker_args)
    if args.child is not None:
        return worker_child(args.bootstrap, str(args.out), args.modes, args.child)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logdir = args.out.parent / "serving-logs"
    logdir.mkdir(exist_ok=True)
    modes = [MODE_NAMES.get(m, m) for m in args.modes.split(",")]
    unknown = sorted(set(modes) - set(MODE_NAMES.values()))
    if unknown:
        parser.error(f"--modes {args.modes}: {', '.join(unknown)} is not a delivery mode; "
                     "use at-least-once (alo) or exactly-once (eos)")
    clients = args.load_clients.split(",")
    if set(clients) - set(LOAD_CLIENTS):
        parser.error(f"--load-clients {args.load_clients}: use {' or '.join(LOAD_CLIENTS)}, comma-separated")
    if "librdkafka" in clients and importlib.util.find_spec("confluent_kafka") is None:
        parser.error("--load-clients librdkafka needs confluent-kafka: pip install -e '.[test]'")
    rates = [float(r) for r in args.rates.split(",") if r]
    seconds = [float(s) for s in args.seconds.split(",")]
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}, "worker_args": WORKER_ARGS,
                     "kafka": [], "http": []}
    print("(i) request -> prediction readable on <prefix>.predictions (read_committed reader)")
    print(f"{'load client':12s} {'delivery':14s} {'rate/s':>7s} {'sent/s':>7s} {'n':>6s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'max ms':>7s} {'missing':>7s}")
    for rate, secs in zip(rates, seconds):
        for client in clients:
            if args.floor:
                r = bare_run(args.bootstrap, rate, secs, args.seed, client)
                results["kafka"].append(r)
                print(f"{client:12s} {'(one hop)':14s} {rate:7.0f} {'':7s} {r['n']:6d} {r['p50_ms']:7.1f} "
                      f"{r['p99_ms']:7.1f} {r['max_ms']:7.1f} {r['missing']:7d}", flush=True)
            for mode in modes:
                r = kafka_run(args.bootstrap, mode, rate, secs, args.warm, args.seed, logdir, args.diagnose, client)
                results["kafka"].append(r)
                if args.diagnose:
                    print(f"  {json.dumps(r['diagnosis'])}")
                print(f"{client:12s} {mode:14s} {rate:7.0f} {r['sent_rate']:7.0f} {r['n']:6d} {r['p50_ms']:7.1f} "
                      f"{r['p99_ms']:7.1f} {r['max_ms']:7.1f} {r['missing']:7d}", flush=True)
    if args.http_rate > 0:
        print(f"\n(ii) POST /predict through stream-cd serve, {args.clients} keep-alive connections")
        print(f"{'delivery':14s} {'rate/s':>7s} {'got/s':>7s} {'n':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s}")
        for mode in modes:
            r = http_run(args.bootstrap, mode, args.http_rate, args.http_seconds, args.clients, args.warm, args.seed, logdir)
            results["http"].append(r)
            print(f"{mode:14s} {r['rate']:7.0f} {r['achieved_rate']:7.0f} {r['n']:6d} {r['p50_ms']:7.1f} "
                  f"{r['p99_ms']:7.1f} {r['max_ms']:7.1f}", flush=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    main()
