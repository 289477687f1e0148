"""Flags shared by the commands: the pipeline's (``worker`` and ``replay``) and the Kafka connection's."""

from __future__ import annotations

import argparse
import math
import os

import orjson

from stream_cd.config import PipelineConfig
from stream_cd.errors import ConfigError
from stream_cd.learning.specs import PRESETS
from stream_cd.learning.triggers import TriggerSettings

__all__ = ["add_model_flags", "add_topic_flags", "add_kafka_flags", "add_kafka_config_flag", "kafka_options", "config_from_args", "positive_int",
           "positive_float", "probability", "non_negative_float", "KAFKA_CONFIG_ENV"]

KAFKA_CONFIG_ENV = "STREAM_CD_KAFKA_CONFIG"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value} must be positive and finite")
    return value


def probability(text: str) -> float:
    value = positive_float(text)
    if not value < 1:
        raise argparse.ArgumentTypeError(f"{value} must lie strictly between 0 and 1")
    return value


def budget(text: str) -> int | None:
    return None if text.lower() == "none" else positive_int(text)


def ttl(text: str) -> float | None:
    return None if text.lower() == "none" else positive_float(text)


def label(text: str) -> bool | int | float | str:
    """A label given on the command line: a JSON scalar, else the text itself as a class."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if type(value) not in (bool, int, float, str):
        raise argparse.ArgumentTypeError(f"{text!r} is not a label: give a boolean, a number or a string")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number >= 0")
    return value


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    presets = ", ".join(sorted(PRESETS))
    g = parser.add_argument_group("models")
    g.add_argument("--model", default="logreg", metavar="SPEC",
                   help=f"champion model: a preset ({presets}) or package.module:factory (default: logreg)")
    g.add_argument("--shadow", default="none", metavar="SPEC|none",
                   help="challenger scored on the same stream, never served (default: none)")
    g.add_argument("--task", default="auto", choices=("auto", "classification", "regression"),
                   help="auto: the preset's task, else bool/str/int labels are classes and other numbers regression")
    d = parser.add_argument_group("drift")
    d.add_argument("--drift", default="adwin", choices=("adwin", "none"),
                   help="ADWIN on the champion's loss; only a rise in loss is drift (default: adwin)")
    d.add_argument("--on-drift", default="challenge", choices=("challenge", "reset"),
                   help="challenge: a fresh retrain becomes the shadow challenger; reset: it replaces the champion (default: challenge)")
    d.add_argument("--drift-delta", type=positive_float, default=0.002, metavar="D", help="ADWIN delta (default: 0.002)")
    c = parser.add_argument_group("shadow experiment (an anytime-valid sequential test from the challenger's birth)")
    c.add_argument("--alpha", type=probability, default=0.01,
                   help="the probability of ever promoting a challenger that is not better (default: 0.01)")
    c.add_argument("--min-sample", type=positive_int, default=1000, metavar="N",
                   help="paired events before the test may promote or drop (default: 1000)")
    c.add_argument("--drop-budget", type=budget, default=50_000, metavar="N|none",
                   help="drop a challenger not shown better after this many paired events (default: 50000)")
    c.add_argument("--report-every", type=positive_int, default=5000, metavar="N",
                   help="paired events between the keep decisions that report the test's evidence (default: 5000)")
    c.add_argument("--forgetting", choices=("warn", "block", "off"), default="warn",
                   help="before any promotion, check the candidate against the champion on older events: warn "
                   "publishes the evidence with the promotion, block holds a candidate that has forgotten back "
                   "(default: warn)")
    c.add_argument("--reference-size", type=positive_int, default=2000, metavar="N",
                   help="older labeled events kept per model key for the forgetting check (default: 2000)")
    f = parser.add_argument_group("delayed feedback (a request waits for the feedback event with its id)")
    f.add_argument("--max-pending", type=positive_int, default=100_000, metavar="N",
                   help="requests waiting for feedback per model key; the oldest expires first (default: 100000)")
    f.add_argument("--feedback-ttl", type=ttl, default=86_400.0, metavar="SECONDS|none",
                   help="a request older than this in event time expires (default: 86400, one day)")
    f.add_argument("--feedback-default", type=label, metavar="VALUE",
                   help="learn an expired request with this label (a JSON value: false, 0, \"none\"), as click and "
                   "fraud joiners do; default: off, an expired request is only counted")
    t = parser.add_argument_group("update triggers (each firing starts a stateless retrain as challenger)")
    t.add_argument("--every-seconds", type=positive_float, metavar="T", help="time trigger: every T seconds of event time")
    t.add_argument("--performance-threshold", type=float, metavar="X",
                   help="performance trigger: rolling accuracy below X (classification) or MAE above X (regression)")
    t.add_argument("--performance-window", type=positive_int, default=1000, metavar="N", help="events in the rolling metric (default: 1000)")
    vol = t.add_mutually_exclusive_group()
    vol.add_argument("--volume-every", type=positive_int, metavar="N", help="volume trigger: every N labeled events")
    vol.add_argument("--volume-growth", type=positive_float, metavar="PCT", help="volume trigger: when the labeled events grew by PCT percent")
    v = parser.add_argument_group("versions and poisoning guards")
    v.add_argument("--version-every", type=positive_int, default=10_000, metavar="N",
                   help="labeled events between version checkpoints, which bump MINOR (default: 10000)")
    v.add_argument("--source-cap", type=positive_float, metavar="FRACTION",
                   help="at most this fraction of the last --source-window learned events from one source (event field source); default off")
    v.add_argument("--source-window", type=positive_int, default=1000, metavar="N", help="window of the source cap (default: 1000)")
    v.add_argument("--range-guard", type=positive_float, metavar="FACTOR",
                   help="do not learn from numeric features more than FACTOR times their learned range outside it; default off")
    s = parser.add_argument_group("sessions (cold start)")
    s.add_argument("--session-adaptation", choices=("on", "off"), default="on",
                   help="adapt predictions to each session (event field session or user) from its own feedback; "
                   "acts only on events that carry a session (default: on)")
    s.add_argument("--max-sessions", type=positive_int, default=10_000, metavar="N",
                   help="sessions kept per model key, least recently active evicted (default: 10000)")
    s.add_argument("--session-ttl", type=positive_float, default=1800.0, metavar="SECONDS",
                   help="a session idle this long in event time starts fresh (default: 1800)")
    s.add_argument("--predictions", metavar="PATH",
                   help="write every served prediction as JSONL (id, model key, session, version, prediction, label), "
                   "each line once the commit of its event has landed, so a rollback repeats none")
    parser.add_argument("--max-event-bytes", type=positive_int, default=64 * 1024, metavar="B",
                        help="larger messages are invalid and go to the dead-letter topic (default: 65536)")


def add_topic_flags(parser: argparse.ArgumentParser, events: bool = True) -> None:
    parser.add_argument("--topic-prefix", default="stream-cd", metavar="P",
                        help="topics are P.events, P.decisions, P.dead-letter, ... (default: stream-cd)")
    if events:
        parser.add_argument("--topic", metavar="T", help="events topic (default: <prefix>.events)")


def add_kafka_flags(parser: argparse.ArgumentParser, *, required: bool = True,
                    help: str = "Kafka bootstrap address") -> None:
    """``--bootstrap`` and ``--kafka-config``: where Kafka is and how to log in to it.

    >>> p = argparse.ArgumentParser()
    >>> add_kafka_flags(p)
    >>> p.parse_args(["--bootstrap", "b:9093", "--kafka-config", "c.properties"]).kafka_config
    'c.properties'
    """
    parser.add_argument("--bootstrap", required=required, metavar="HOST:PORT", help=help)
    add_kafka_config_flag(parser)


def add_kafka_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--kafka-config`` alone, for a command whose ``--bootstrap`` is one of several sources."""
    parser.add_argument(
        "--kafka-config", metavar="FILE",
        help="Kafka client properties for a secured cluster (security.protocol, sasl.mechanism, sasl.username, "
             "sasl.password or sasl.jaas.config, ssl.ca.location, ...; values may name ${ENV_VARS}); "
             f"default: ${KAFKA_CONFIG_ENV} when set, else a plaintext connection. Passwords are never read "
             "from the command line",
    )


def kafka_options(args: argparse.Namespace) -> dict:
    """The kafka-python client options of ``--kafka-config`` (or ``$STREAM_CD_KAFKA_CONFIG``), after
    one login to ``--bootstrap`` that fails within seconds, naming the cause, when it is refused.
    ``{}`` without a config file.

    >>> kafka_options(argparse.Namespace(bootstrap="b:9092", kafka_config=None)) if not os.environ.get(KAFKA_CONFIG_ENV) else {}
    {}
    """
    path = args.kafka_config or os.environ.get(KAFKA_CONFIG_ENV)
    if not path or not args.bootstrap:
        if args.kafka_config:
            raise ConfigError(f"--kafka-config {args.kafka_config} needs --bootstrap: name the broker to log in to")
        return {}
    # Imported here: only a command that talks to Kafka loads its edge.
    from consumers.client_config import load_client_config
    from consumers.preflight import check_access

    config = load_client_config(path)
    if config.bootstrap and args.bootstrap and config.bootstrap != args.bootstrap:
        import logging

        logging.getLogger(__name__).info("%s names bootstrap.servers=%s; --bootstrap %s is used", path,
                                         config.bootstrap, args.bootstrap)
    check_access(args.bootstrap, config.options, path)
    return config.options


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline configuration the flags describe."""
    return PipelineConfig(
        task=args.task,
        model=args.model,
        shadow=args.shadow,
        drift=args.drift,
        on_drift=args.on_drift,
        drift_delta=args.drift_delta,
        alpha=args.alpha,
        min_sample=args.min_sample,
        drop_budget=args.drop_budget,
        report_every=args.report_every,
        forgetting=args.forgetting,
        reference_size=args.reference_size,
        max_pending=args.max_pending,
        feedback_ttl_s=args.feedback_ttl,
        feedback_default=args.feedback_default,
        triggers=TriggerSettings(
            every_s=args.every_seconds,
            performance_below=args.performance_threshold,
            performance_window=args.performance_window,
            volume_every=args.volume_every,
            volume_growth_pct=args.volume_growth,
        ),
        version_every=args.version_every,
        source_cap=args.source_cap,
        source_window=args.source_window,
        range_guard=args.range_guard,
        session_adaptation=args.session_adaptation == "on",
        max_sessions=args.max_sessions,
        session_ttl_s=args.session_ttl,
        max_event_bytes=args.max_event_bytes,
    )
