"""The worker's observability flags: ``--metrics-port``, ``--metrics-addr``, ``--metrics-max-keys``, ``--log-format``.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_observe_flags(parser)
>>> args = parser.parse_args(["--metrics-port", "9108", "--log-format", "json"])
>>> args.metrics_port, args.metrics_addr, args.metrics_max_keys, args.log_format
(9108, '0.0.0.0', 100, 'json')
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from stream_cd.cli.options import positive_int
from stream_cd.observe.logs import LOG_FORMATS, configure_logging
from stream_cd.observe.metrics import DEFAULT_MAX_KEYS, WorkerMetrics

__all__ = ["add_observe_flags", "port", "observing"]


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} must lie between 1 and 65535")
    return value


def add_observe_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("observability")
    g.add_argument("--metrics-port", type=port, metavar="P",
                   help="serve Prometheus metrics on http://ADDR:P/metrics (default: off)")
    g.add_argument("--metrics-addr", default="0.0.0.0", metavar="ADDR",
                   help="address the metrics server listens on (default: 0.0.0.0, every interface)")
    g.add_argument("--metrics-max-keys", type=positive_int, default=DEFAULT_MAX_KEYS, metavar="N",
                   help="model keys with a label of their own in the metrics, those with most events first; the "
                   f"rest are summed as model_key=\"__other__\" (default: {DEFAULT_MAX_KEYS}; each key is about 20 series)")
    g.add_argument("--log-format", choices=LOG_FORMATS, default="human",
                   help="log lines on stderr (one per decision, rebalance, restore and commit failure, each with the "
                   "worker id): human-readable, or one JSON object a line (default: human)")


@contextmanager
def observing(args: argparse.Namespace, *, worker_id: str, group: str, topic: str, bootstrap: str,
              client_options: dict | None = None) -> Iterator[WorkerMetrics | None]:
    """Configure the log lines; with ``--metrics-port``, serve the metrics while the block runs
    and yield the observer to hand to the worker (else None)."""
    configure_logging(args.log_format, worker_id)
    if args.metrics_port is None:
        yield None
        return
    from consumers.lag import EndOffsets
    from stream_cd.observe.exporter import serve_metrics

    lag = EndOffsets(bootstrap, topic, group, client_options=client_options)
    metrics = WorkerMetrics(args.metrics_max_keys, lag_source=lag,
                            info={"worker_id": worker_id, "group": group, "topic": topic, "delivery": args.delivery})
    server = serve_metrics(metrics, args.metrics_port, args.metrics_addr)
    try:
        yield metrics
    finally:
        server.shutdown()
        server.server_close()
        lag.close()
