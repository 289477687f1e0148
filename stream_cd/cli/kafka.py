"""``stream-cd kafka up|down|status``: a local Apache Kafka broker for development and CI.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="stream-cd")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["kafka", "up", "--port", "19092", "--dir", "/tmp/k"])
>>> args.port, args.dir, args.run.__name__, args.secure
(19092, '/tmp/k', '_up', False)
"""

from __future__ import annotations

import argparse

from stream_cd.broker.manager import DEFAULT_DIR, DEFAULT_PORT, LocalBroker, Probe
from stream_cd.cli.options import positive_float

__all__ = ["register"]

EXIT_NOT_RUNNING = 3


def _probe(broker: LocalBroker, secure: bool) -> Probe:
    """The readiness probe; a secured broker's logs in with the client properties ``start`` wrote."""

    def probe(bootstrap: str, timeout_s: float) -> str | None:
        # Imported here: the core package never imports kafka-python at module level.
        from consumers.admin import broker_cluster_id
        from consumers.client_config import load_client_config

        options = load_client_config(broker.client_properties).options if secure else {}
        return broker_cluster_id(bootstrap, timeout_s, client_options=options)

    return probe


def _up(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.dir)
    address = broker.start(_probe(broker, args.secure), port=args.port, timeout_s=args.timeout, secure=args.secure)
    if args.secure:
        print(f"client config (for --kafka-config): {broker.client_properties}", flush=True)
    print(address, flush=True)
    return 0


def _down(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.dir)
    pid = broker.stop(grace_s=args.timeout)
    print(f"stopped the broker in {broker.dir} (pid {pid})" if pid else f"no broker of ours running in {broker.dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.dir)
    status = broker.status()
    print(f"{status} in {broker.dir}")
    return 0 if status.running else EXIT_NOT_RUNNING


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", default=str(DEFAULT_DIR), metavar="D",
        help=f"broker directory: config, pid, logs and data (default: {DEFAULT_DIR}, relative to the current directory)",
    )


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``kafka`` command and its ``up``, ``down`` and ``status`` subcommands."""
    kafka = subparsers.add_parser(
        "kafka", help="run a local Apache Kafka broker (KRaft, single node) from Maven jars",
        description="Run a local single-node Apache Kafka broker in KRaft mode on 127.0.0.1. "
                    "Needs Java 17+ and, for the first start only, Maven (the jars are cached "
                    "under ~/.cache/stream-cd).",
    )
    actions = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser(
        "up", help="start the broker in the background and print its bootstrap address",
        description="Start the broker in the background, wait until it answers metadata requests and "
                    "print its bootstrap address 127.0.0.1:PORT as the last line of stdout. "
                    "If it already runs in --dir, print its address.",
    )
    up.add_argument("--port", type=int, default=None, metavar="P",
                    help=f"client port on 127.0.0.1 (default: {DEFAULT_PORT})")
    up.add_argument("--secure", action="store_true",
                    help="a SASL_SSL client listener (SCRAM-SHA-512, certificates made at the first start): "
                         "the SCRAM user's client properties are written to D/client.properties (mode 0600) "
                         "and their path printed before the address. A directory keeps the kind its first "
                         "start gave it")
    _dir_option(up)
    up.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                    help="seconds to wait for the broker to be ready before stopping it (default: 60)")
    up.set_defaults(run=_up)

    down = actions.add_parser(
        "down", help="stop the broker started in --dir",
        description="Stop the broker started in --dir by its recorded pid (SIGTERM, then SIGKILL after --timeout). "
                    "Data stays in --dir, so a later `up` finds its topics and offsets again.",
    )
    _dir_option(down)
    down.add_argument("--timeout", type=positive_float, default=30.0, metavar="S",
                      help="seconds to wait for a clean shutdown before SIGKILL (default: 30)")
    down.set_defaults(run=_down)

    status = actions.add_parser(
        "status", help="say whether the broker of --dir runs and where (exit 0 running, 3 not)",
        description="Say whether the broker of --dir runs, with its address and pid. "
                    f"Exit status 0 when it runs, {EXIT_NOT_RUNNING} when it does not.",
    )
    _dir_option(status)
    status.set_defaults(run=_status)
