"""Which Kafka compression codec suits the worker's outputs (issue 14, point 9).

No broker needed::

    .venv/bin/python bench/codec_choice.py            # the table in bench/README.md
    .venv/bin/python bench/codec_choice.py --quick    # smaller, for a smoke run

(i)  Checkpoints: a model key (``Pipeline(PipelineConfig(model="logreg",
     shadow="logreg"))``) learns ``--events`` Agrawal events of one key, and what
     the worker writes for it (``dump_state``: pickle + HMAC) is compressed with
     each codec by kafka-python's own functions (``kafka.codec``: what its
     producer applies to a record batch); so is a batch of ``--keys`` such
     checkpoints of different keys, as one commit sends them.
(ii) Predictions: batches of 1 and of 5 served-prediction records (the predictions
     producer lingers 1 ms: at 5,000/s about five share a batch, at 50/s each goes
     alone), the same way.

For each: the bytes after compression as a ratio of the bytes before
(smaller is better), and the median times of one compress and of one decompress.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import orjson
from kafka import codec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_cd.config import PipelineConfig  # noqa: E402
from stream_cd.pipeline import Pipeline  # noqa: E402
from stream_cd.simulate.datasets import generate  # noqa: E402
from stream_cd.state.signing import dump_state  # noqa: E402

STATE_KEY = b"bench-state-key-0123456789abcdef"

CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (codec.gzip_encode, codec.gzip_decode),
    "snappy": (codec.snappy_encode, codec.snappy_decode),
    "lz4": (codec.lz4_encode, codec.lz4_decode),
    "zstd": (codec.zstd_encode, codec.zstd_decode),
}


def checkpoint_blobs(events: int, keys: int) -> dict[str, bytes]:
    """What one commit writes after ``keys`` model keys, each a logreg pair, learned
    ``events`` Agrawal events each (a different seed per key): signed checkpoints by
    record key (one per model key, and the partition's own record)."""
    pipeline = Pipeline(PipelineConfig(model="logreg", shadow="logreg"))
    for k in range(keys):
        for ts, event in enumerate(generate("agrawal", events, seed=k, key=f"k{k}")):
            pipeline.process(orjson.dumps(event), ts)
    return {key: dump_state(state, STATE_KEY, key) for key, state, _ in pipeline.take_checkpoints()}


def prediction_batch(n: int) -> bytes:
    """``n`` served-prediction records as the predictions producer sends them, concatenated."""
    records = [
        {"id": f"r{1_000_000 + i}", "model_key": "shop-17", "arm": "champion", "version": "v3.12",
         "experiment": None, "prediction": i % 2 == 0, "ts": 1_732_600_000_000 + i}
        for i in range(n)
    ]
    return b"".join(orjson.dumps(r) for r in records)


def measure(payload: bytes, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Per codec: compressed size / size, and the median µs of one compress and of one
    decompress."""
    out = {}
    for name, (encode, decode) in CODECS.items():
        packs, unpacks, size = [], [], 0
        for _ in range(repeat):
            start = perf_counter()
            packed = encode(payload)
            middle = perf_counter()
            assert decode(packed) == payload
            unpacks.append(perf_counter() - middle)
            packs.append(middle - start)
            size = len(packed)
        out[name] = (size / len(payload), statistics.median(packs) * 1e6, statistics.median(unpacks) * 1e6)
    return out


def table(rows: list[tuple[str, bytes]], repeat: int) -> str:
    """A markdown table: one line per payload and codec."""
    lines = ["| payload | bytes | codec | ratio | compress, µs | decompress, µs |", "|---|---|---|---|---|---|"]
    for label, payload in rows:
        for name, (ratio, pack, unpack) in measure(payload, repeat).items():
            lines.append(f"| {label} | {len(payload):,} | {name} | {ratio:.3f} | {pack:,.0f} | {unpack:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events each key learns (default 20000)")
    parser.add_argument("--keys", type=int, default=10, help="checkpoints in the batch of several keys (default 10)")
    parser.add_argument("--repeat", type=int, default=50, help="timed repetitions per cell (default 50)")
    parser.add_argument("--quick", action="store_true", help="2,000 events, 3 keys, 10 repetitions")
    args = parser.parse_args()
    if args.quick:
        args.events, args.keys, args.repeat = 2_000, 3, 10
    blobs = checkpoint_blobs(args.events, args.keys)
    rows = [
        (f"one model key's checkpoint (logreg pair, {args.events:,} events)", blobs["model:k0"]),
        (f"a commit's {len(blobs)} checkpoints ({args.keys} keys)", b"".join(blobs.values())),
        ("1 prediction", prediction_batch(1)),
        ("5 predictions", prediction_batch(5)),
    ]
    print(table(rows, args.repeat))


if __name__ == "__main__":
    main()
