"""The pipeline commands: ``worker``, ``replay`` and ``decisions`` (and ``generate``, from its own module).

Kafka-facing work is imported from ``consumers``/``producers`` only when a
command needs a broker, so the embedded path runs without touching Kafka.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import orjson

from stream_cd.cli import generate
from stream_cd.cli.observe import add_observe_flags, observing
from stream_cd.cli.state_flags import add_state_flags, schedule_from_args
from stream_cd.committed_outputs import CommittedOutputs
from stream_cd.cli.options import (add_kafka_flags, add_model_flags, add_topic_flags, config_from_args, kafka_options,
                                   positive_float, positive_int)
from stream_cd.decisions import Decision
from stream_cd.errors import ConfigError
from stream_cd.report import decision_line, summary_json, summary_table
from stream_cd.state.signing import STATE_KEY_ENV, state_key_from_env
from stream_cd.transport import Topics
from stream_cd.worker import DEFAULT_COMMIT_EVENTS, DEFAULT_COMMIT_SECONDS

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    _register_worker(commands)
    _register_replay(commands)
    _register_decisions(commands)
    generate.register(commands)


# -- worker -------------------------------------------------------------------


def _register_worker(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "worker",
        help="train models from a Kafka topic as a consumer-group member",
        description="Consume events from Kafka in a consumer group, train one champion per model key on every "
        "labeled event, publish decisions to <prefix>.decisions and bad messages to <prefix>.dead-letter. "
        "SIGTERM or SIGINT finishes the current batch and exits cleanly.",
    )
    add_kafka_flags(p)
    add_topic_flags(p)
    p.add_argument("--group", metavar="G", help="consumer group (default: <prefix>.workers)")
    p.add_argument("--max-events", type=positive_int, metavar="N", help="stop after N new messages, valid or not (those a restore reads again do not count)")
    p.add_argument("--idle-exit", type=positive_float, metavar="SECONDS", help="stop after SECONDS with no new message, once the held partitions are read to their end (a reading stuck with messages left waits up to three more periods)")
    p.add_argument("--batch-size", type=positive_int, default=2000, metavar="N", help="messages per poll (default: 2000)")
    p.add_argument("--delivery", choices=("exactly-once", "at-least-once"), default="exactly-once",
                   help="exactly-once: decisions, signed checkpoints and offsets commit in one transaction and model "
                   f"state survives restarts (needs {STATE_KEY_ENV}: a key, or several comma-separated, newest first, "
                   "while rotating it); at-least-once: outputs, then offsets, no "
                   "state kept (default: exactly-once)")
    p.add_argument("--worker-id", metavar="ID",
                   help="stable name of this worker (e.g. the pod name): a restarted worker with the same id fences "
                   "its crashed self at once (default: the host name). Set it where host names are not stable, and "
                   "give each worker its own where several run on one host (e.g. HOST-1, HOST-2): exactly-once, a "
                   "second live worker with the same id on a host is refused, as the two would fence each other")
    p.add_argument("--commit-every-events", type=positive_int, default=DEFAULT_COMMIT_EVENTS, metavar="N",
                   help=f"commit at least every N messages (default: {DEFAULT_COMMIT_EVENTS})")
    p.add_argument("--commit-every-seconds", type=positive_float, default=DEFAULT_COMMIT_SECONDS, metavar="S",
                   help=f"commit at least every S seconds; exactly-once decisions become visible then (default: {DEFAULT_COMMIT_SECONDS})")
    p.add_argument("--publish-predictions", action="store_true",
                   help="publish every served prediction to <prefix>.predictions at once, outside the state transaction "
                   "(an idempotent producer of its own; a prediction repeated after a crash is identical)")
    p.add_argument("--fetch-inline", action="store_true",
                   help="fetch and decode messages in the worker's own process; by default a second process does it, "
                   "beside the learning (about 1.2x the events/s with two cores)")
    p.add_argument("--json", action="store_true",
                   help="print decisions as JSON lines on stdout and end with the JSON summary line (the log lines, "
                   "decisions among them, stay on stderr)")
    add_state_flags(p)
    add_observe_flags(p)
    add_model_flags(p)
    p.set_defaults(run=_worker)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _decision_printer(as_json: bool, stream=None):
    out = stream or sys.stdout

    def show(decision: Decision) -> None:
        d = decision.to_dict()
        out.write((orjson.dumps(d).decode() if as_json else decision_line(d)) + "\n")
        out.flush()

    return show


@contextmanager
def _prediction_sinks(args: argparse.Namespace, outputs: CommittedOutputs):
    """The callback that writes served predictions to ``--predictions``, if asked for: each
    line once the commit of its event has landed (``outputs``), flushed with its batch."""
    if not args.predictions:
        yield None
        return
    with open(args.predictions, "wb") as handle:
        outputs.after_write = handle.flush
        yield outputs.wrap(lambda record: handle.write(orjson.dumps(record) + b"\n"))


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    print(summary_json(summary) if as_json else summary_table(summary), flush=True)


def _worker(args: argparse.Namespace) -> int:
    import contextlib
    import socket

    from stream_cd.pipeline import Pipeline

    exactly_once = args.delivery == "exactly-once"
    state_key = state_key_from_env(required=True) if exactly_once else None
    client_options = kafka_options(args)
    pipeline = Pipeline(config_from_args(args), record_predictions=bool(args.predictions or args.publish_predictions),
                        snapshots=schedule_from_args(args))
    topics = Topics(args.topic_prefix, args.topic or "")
    group = args.group or f"{args.topic_prefix}.workers"
    worker_id = args.worker_id or socket.gethostname()
    from consumers.kafka_worker import run_kafka_worker, transactional_id
    from consumers.transactional_lock import hold_transactional_id

    one_per_id = hold_transactional_id(transactional_id(group, worker_id)) if exactly_once else contextlib.nullcontext()
    outputs = CommittedOutputs()  # printed decisions and --predictions lines: written when their commit lands
    with one_per_id, _stop_on_signals() as stop, _prediction_sinks(args, outputs) as write_file, \
            observing(args, worker_id=worker_id, group=group, topic=topics.events, bootstrap=args.bootstrap,
                      client_options=client_options) as observer:
        stats = run_kafka_worker(
            args.bootstrap,
            topics,
            group,
            pipeline,
            state_key=state_key,
            worker_id=worker_id,
            max_events=args.max_events,
            idle_exit=args.idle_exit,
            stop=stop,
            on_decision=outputs.wrap(_decision_printer(True)) if args.json else None,  # else the log lines show them
            observer=observer,
            outputs=outputs,
            batch_size=args.batch_size,
            commit_every_events=args.commit_every_events,
            commit_every_s=args.commit_every_seconds,
            on_prediction=write_file,
            publish_predictions=args.publish_predictions,
            fetch_process=not args.fetch_inline,
            max_snapshot_bytes=args.max_snapshot_bytes,
            client_options=client_options,
        )
    summary = pipeline.summary()
    summary["worker"] = {
        "consumed": stats.consumed,
        "replayed": pipeline.replayed,
        "commits": stats.commits,
        "checkpoints_written": stats.checkpoints_written,
        "restored": stats.restored,
        "refused_checkpoints": stats.refused_checkpoints,
        "checkpoint_bytes": stats.checkpoint_bytes,
        "unsaved": stats.unsaved,
        "stopped_by": stats.stopped_by,
    }
    _print_summary(summary, args.json)
    return 0


# -- replay -------------------------------------------------------------------


def _register_replay(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "replay",
        help="replay a recorded stream into Kafka, or run the whole pipeline in-process",
        description="With --bootstrap, produce FILE's events to Kafka keyed by model key. Without it, run the "
        "whole pipeline in this process on the embedded transport, print decisions as they happen and the "
        "summary at the end.",
    )
    p.add_argument("file", metavar="FILE", help="events as .jsonl (one JSON object a line) or .csv with a header; - for JSONL on stdin")
    add_kafka_flags(p, required=False, help="Kafka bootstrap address; without it, run in-process")
    add_topic_flags(p)
    p.add_argument("--rate", type=positive_float, metavar="EVENTS_PER_S", help="pace the replay at this many events per second")
    p.add_argument("--label", default="y", metavar="COLUMN", help="label column of a CSV file (default: y)")
    p.add_argument("--json", action="store_true", help="in-process: one JSON decision a line, then the JSON summary line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--experiment", metavar="FILE.json",
                   help='start an experiment before the first event: {"key": K, "experiment": {...}} (or a list of '
                   'them), as `stream-cd experiment start` would; control lines in FILE apply where they stand')
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help=f"in-process: keep signed model state in DIR and resume from it on the next run over the same "
                   f"file (needs {STATE_KEY_ENV})")
    add_state_flags(p)
    add_model_flags(p)
    p.set_defaults(run=_replay)


@contextmanager
def _progress(path: str, enabled: bool) -> Iterator[Any]:
    """A progress bar on stderr over the file's events (a count when the total is unknown)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = _count_lines(path) if enabled and path != "-" else None
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
        redirect_stdout=True,
    )
    with progress:
        task = progress.add_task("events", total=total)
        yield lambda n: progress.advance(task, n)


def _count_lines(path: str) -> int | None:
    if path.lower().endswith(".csv"):
        return None
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def _replay(args: argparse.Namespace) -> int:
    from stream_cd.sources import read_events

    events = read_events(args.file, label=args.label)
    if args.experiment:
        events = itertools.chain(experiment_starts(args.experiment), events)
    show_progress = not args.no_progress and sys.stderr.isatty()
    options = kafka_options(args)
    if args.bootstrap:
        from producers.replay import replay_to_kafka

        topic = Topics(args.topic_prefix, args.topic or "").events
        with _progress(args.file, show_progress) as advance:
            sent = replay_to_kafka(events, args.bootstrap, topic, rate=args.rate, on_sent=advance, client_options=options)
        print(f"replayed {sent} events to {topic} at {args.bootstrap}", file=sys.stderr)
        return 0
    return _replay_embedded(args, events, show_progress)


def experiment_starts(path: str) -> list[bytes]:
    """The start control messages of an experiment file, each definition checked."""
    from stream_cd.cli.experiment import control_message
    from stream_cd.evaluation.definition import ExperimentDefinition

    try:
        with open(path, "rb") as handle:
            loaded = orjson.loads(handle.read())
    except OSError as err:
        raise ConfigError(f"--experiment {path}: {err.strerror}") from None
    except orjson.JSONDecodeError as err:
        raise ConfigError(f"--experiment {path} is not valid JSON: {err}") from None
    entries = loaded if isinstance(loaded, list) else [loaded]
    messages = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("experiment"), dict):
            raise ConfigError(f'--experiment {path}: each entry is {{"key": K, "experiment": {{...}}}}, not {entry!r}')
        definition = ExperimentDefinition.from_mapping(entry["experiment"])
        messages.append(control_message(entry.get("key", "default"), "start", definition.to_dict()))
    return messages


def _replay_embedded(args: argparse.Namespace, events: Iterator[bytes], show_progress: bool) -> int:
    from stream_cd.embedded import DirectoryStore, EmbeddedTransport
    from stream_cd.sources import paced
    from stream_cd.pipeline import Pipeline
    from stream_cd.worker import run_worker

    pipeline = Pipeline(config_from_args(args), record_predictions=bool(args.predictions), snapshots=schedule_from_args(args))
    topics = Topics(args.topic_prefix, args.topic or "")
    store = state_key = None
    if args.checkpoint_dir:
        state_key = state_key_from_env(required=True)
        store = DirectoryStore(args.checkpoint_dir)
    transport = EmbeddedTransport(paced(events, args.rate), topic=topics.events, keep=False, store=store)
    outputs = CommittedOutputs()
    with _stop_on_signals() as stop, _progress(args.file, show_progress) as advance, \
            _prediction_sinks(args, outputs) as write:
        run_worker(
            transport,
            pipeline,
            topics,
            stop=stop,
            on_decision=outputs.wrap(_decision_printer(args.json)),
            outputs=outputs,
            on_batch=advance,
            batch_size=500,
            state_key=state_key,
            on_prediction=write,
            max_snapshot_bytes=args.max_snapshot_bytes,
        )
    _print_summary(pipeline.summary(), args.json)
    return 0


# -- decisions ----------------------------------------------------------------


def _register_decisions(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "decisions",
        help="print decisions from the control topic, one JSON object a line",
        description="Read <prefix>.decisions (read_committed, without joining a consumer group) and print one "
        "JSON decision a line. Without --follow it stops at the end of the topic.",
    )
    add_kafka_flags(p)
    add_topic_flags(p, events=False)
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest stored decision (default: only new ones)")
    p.add_argument("--follow", action="store_true", help="keep waiting for new decisions")
    p.add_argument("--max", type=positive_int, metavar="N", help="stop after N decisions")
    p.add_argument("--key", metavar="K", help="only decisions of model key K")
    p.set_defaults(run=_decisions)


def _decisions(args: argparse.Namespace) -> int:
    from consumers.subscribe import subscribe_decisions

    with _stop_on_signals() as stop:
        for decision in subscribe_decisions(
            args.bootstrap,
            Topics(args.topic_prefix).decisions,
            from_beginning=args.from_beginning,
            follow=args.follow,
            max_decisions=args.max,
            key=args.key,
            stop=stop,
            client_options=kafka_options(args),
        ):
            print(orjson.dumps(decision).decode(), flush=True)
    return 0
