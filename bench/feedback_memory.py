"""Peak RSS of a Kafka worker whose requests never get feedback (issue 12, "Delayed feedback").

Run by hand against a real broker::

    .venv/bin/python bench/feedback_memory.py --bootstrap 127.0.0.1:9092 [--requests 10000,100000,300000]

For each count, that many prediction requests (Agrawal features, each with an id,
no feedback ever) go into a fresh topic, and a ``stream-cd worker`` (exactly-once,
logreg champion) serves them with ``--max-pending 1000`` and again with the
default (100,000); its peak resident memory is read from the kernel when it exits
(``getrusage(RUSAGE_CHILDREN)`` of a process that runs only that worker).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path

import orjson

from consumers.admin import TopicSpec, ensure_topics
from producers.replay import replay_to_kafka
from stream_cd.simulate.datasets import generate

ROOT = Path(__file__).resolve().parents[1]
RUN_ONE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True)
assert done.returncode == 0, done.stderr.decode()[-2000:]
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.stdout.decode().splitlines()[-1])
"""


def peak_rss_mb(bootstrap: str, prefix: str, max_pending: int) -> tuple[float, dict]:
    # a prefix (and so a checkpoints topic) of its own: a restored key would keep the first run's settings
    cmd = [sys.executable, "-m", "stream_cd.cli", "worker", "--bootstrap", bootstrap, "--topic", f"{prefix}.events",
           "--topic-prefix", f"{prefix}-{max_pending}", "--model", "logreg", "--max-pending", str(max_pending),
           "--idle-exit", "5", "--json", "--worker-id", f"mem-{max_pending}"]
    env = {**os.environ, "STREAM_CD_STATE_KEY": os.environ.get("STREAM_CD_STATE_KEY", "bench-state-key-0123456789abcdef")}
    out = subprocess.run([sys.executable, "-c", RUN_ONE, *cmd], capture_output=True, cwd=ROOT, env=env, check=True)
    kb, summary = out.stdout.decode().split(" ", 1)
    models = orjson.loads(summary)["summary"]["models"]
    if "default" not in models:
        raise SystemExit(f"the worker learned nothing of model key 'default': {summary[:500]}")
    return int(kb) / 1024, models["default"]["feedback"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    parser.add_argument("--requests", default="10000,100000,300000", metavar="N,N,...")
    args = parser.parse_args()
    print(f"{'requests':>9} {'max-pending':>11} {'peak RSS MB':>11}  feedback")
    for n in (int(v) for v in args.requests.split(",")):
        prefix = f"bench-mem-{uuid.uuid4().hex[:8]}"
        ensure_topics(args.bootstrap, [TopicSpec(f"{prefix}.events", partitions=1)])
        requests = (orjson.dumps({"id": f"q{i}", "ts": e["ts"], "x": e["x"]}) for i, e in enumerate(generate("agrawal", n, seed=1)))
        replay_to_kafka(requests, args.bootstrap, f"{prefix}.events")
        for max_pending in (1000, 100_000):
            rss, feedback = peak_rss_mb(args.bootstrap, prefix, max_pending)
            print(f"{n:>9,} {max_pending:>11,} {rss:>11.0f}  {feedback}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
