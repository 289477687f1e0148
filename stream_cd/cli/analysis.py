"""The offline commands: ``report`` (an HTML report of a run's decisions) and ``freshness``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_cd.cli.options import add_kafka_config_flag, kafka_options, positive_int

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    _register_report(commands)
    _register_freshness(commands)


# -- report -------------------------------------------------------------------


def _register_report(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report",
        help="write one self-contained HTML report of a run's decisions",
        description="Read a run's decisions from the control topic or from a file of what `replay --json`, "
        "`worker --json` or `decisions` printed, and write one HTML file: per model key the rolling metric of "
        "every model over the stream with its drift alarms, retrains, promotions, rollbacks and canary steps, the "
        "experiments with their traffic and outcome, and the table of decisions. The plots are embedded PNGs: "
        "the file needs no network to view. The plot has a point at each decision: a lower --version-every "
        "(checkpoint decisions) draws it finer.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--bootstrap", metavar="HOST:PORT", help="read <prefix>.decisions from this Kafka broker, from its beginning")
    add_kafka_config_flag(p)
    source.add_argument("--from", dest="from_file", metavar="RUN.jsonl",
                        help="read the decisions (and the summary line, if any) from this file; - for stdin")
    p.add_argument("--topic-prefix", default="stream-cd", metavar="P",
                   help="with --bootstrap: decisions are in P.decisions (default: stream-cd)")
    p.add_argument("--key", metavar="K", help="only model key K")
    p.add_argument("--out", default="report.html", metavar="FILE", help="the HTML file to write (default: report.html)")
    p.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> int:
    from stream_cd.analysis.html_report import render_html
    from stream_cd.analysis.timeline import read_run, read_run_file
    from stream_cd.errors import ConfigError

    if args.bootstrap:
        import orjson

        from consumers.subscribe import subscribe_decisions
        from stream_cd.transport import Topics

        topic = Topics(args.topic_prefix).decisions
        options = kafka_options(args)
        run = read_run(orjson.dumps(d) for d in subscribe_decisions(args.bootstrap, topic, from_beginning=True, key=args.key,
                                                                    client_options=options))
        source = f"{topic} at {args.bootstrap}"
        if not run.keys:
            raise ConfigError(f"no decisions in {topic} at {args.bootstrap}; check --topic-prefix")
    elif args.from_file == "-":
        run, source = read_run(sys.stdin.buffer), "stdin"
        if not run.keys:
            raise ConfigError("stdin holds no decisions")
    else:
        run, source = read_run_file(args.from_file), args.from_file
    if args.key is not None:
        if args.key not in run.keys:
            raise ConfigError(f"model key {args.key!r} has no decisions here; keys: {', '.join(sorted(run.keys))}")
        run.keys = {args.key: run.keys[args.key]}
    out = Path(args.out)
    try:
        out.write_text(render_html(run, source), encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot write {out}: {err.strerror}") from None
    decisions = sum(len(k.decisions) for k in run.keys.values())
    skipped = f"; {run.skipped_lines} lines that were not decisions skipped" if run.skipped_lines else ""
    print(f"wrote {out}: {len(run.keys)} model keys, {decisions} decisions{skipped}", file=sys.stderr)
    return 0


# -- freshness ----------------------------------------------------------------


def _lags(text: str) -> list[int]:
    try:
        lags = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not lags or lags[0] < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one lag, none negative")
    return lags


def _frequencies(text: str) -> list[int]:
    values = _lags(text)
    if values[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: update frequencies are at least 1 event")
    return values


def _register_freshness(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "freshness",
        help="measure what fresher training data is worth on a recorded stream",
        description="Two studies on FILE's labeled events. (1) Staleness: at --points evaluation points along the "
        "stream, one model per lag is trained from scratch on the --window events that end LAG events before the "
        "most recent --eval events, and evaluated on those; a table of each lag's metric (mean and spread over "
        "the points, and its difference to the freshest) and a plot of metric against staleness. (2) Updating: "
        "every --update-every events, stateful fine-tuning (the model learns the new events) against stateless "
        "retraining (a fresh model trained on the last --window events), each serving the events until the next "
        "update; their metric and training time, a table and a plot.",
    )
    p.add_argument("file", metavar="FILE", help="events as .jsonl or .csv (labeled events are used; requests and feedback are skipped)")
    p.add_argument("--model", default="logreg", metavar="SPEC", help="model spec: a preset or package.module:factory (default: logreg)")
    p.add_argument("--lags", type=_lags, default=[0, 1000, 5000, 20000], metavar="L1,L2,...",
                   help="staleness of the training window, in events (default: 0,1000,5000,20000)")
    p.add_argument("--window", type=positive_int, default=5000, metavar="N", help="events each model is trained on (default: 5000)")
    p.add_argument("--eval", type=positive_int, default=1000, metavar="N", help="most recent events each model is evaluated on (default: 1000)")
    p.add_argument("--points", type=positive_int, default=8, metavar="K",
                   help="evaluation points, evenly spaced over the part of the stream every lag can reach (default: 8)")
    p.add_argument("--update-every", type=_frequencies, default=None, metavar="F1,F2,...",
                   help="update frequencies of study (2), in events (default: the --eval size times 1, 5 and 20)")
    p.add_argument("--label", default="y", metavar="COLUMN", help="label column of a CSV file (default: y)")
    p.add_argument("--key", metavar="K", help="only events of model key K (default: all)")
    p.add_argument("--out", default="freshness", metavar="DIR",
                   help="directory for freshness.png, updates.png and freshness.json (default: freshness)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object instead of tables")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_freshness)


def _labeled(path: str, label: str, key: str | None) -> tuple[list[dict], list, int]:
    """The features and labels of the file's labeled events, and how many lines were left out."""
    from stream_cd.errors import InvalidEvent
    from stream_cd.events import decode_event
    from stream_cd.sources import read_events

    xs, ys, left_out = [], [], 0
    for raw in read_events(path, label=label):
        try:
            event = decode_event(raw)
        except InvalidEvent:
            left_out += 1
            continue
        if event.x is None or event.y is None or (key is not None and event.key != key):
            left_out += 1
            continue
        xs.append(event.x)
        ys.append(event.y)
    return xs, ys, left_out


def _freshness(args: argparse.Namespace) -> int:
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from stream_cd.analysis.freshness import evaluation_points, staleness_study
    from stream_cd.analysis.updates import update_steps, update_study
    from stream_cd.errors import ConfigError
    from stream_cd.learning.specs import ModelSpec

    ModelSpec.parse(args.model)  # a bad spec fails before the file is read
    xs, ys, left_out = _labeled(args.file, args.label, args.key)
    if not xs:
        raise ConfigError(f"{args.file} has no labeled events (with x and y){'' if args.key is None else f' of key {args.key!r}'}")
    every = args.update_every or [args.eval, 5 * args.eval, 20 * args.eval]
    points = evaluation_points(len(xs), args.window, args.eval, args.lags, args.points)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot use output directory {out}: {err.strerror}") from None
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), disable=args.no_progress or not sys.stderr.isatty(),
                        console=None, transient=True)
    with progress:
        stale = progress.add_task("staleness: models trained", total=len(points) * len(args.lags))
        result = staleness_study(xs, ys, args.model, lags=args.lags, window=args.window, eval_n=args.eval,
                                 points=args.points, progress=lambda n: progress.advance(stale, n))
        steps = progress.add_task("updates: stateful vs stateless", total=update_steps(len(xs), args.window, every))
        rows = update_study(xs, ys, args.model, every=every, window=args.window, progress=lambda n: progress.advance(steps, n))
    from stream_cd.analysis.plots import freshness_plot_png, updates_plot_png

    (out / "freshness.png").write_bytes(freshness_plot_png(result))
    (out / "updates.png").write_bytes(updates_plot_png(rows, result.metric))
    report = {"file": args.file, "events": len(xs), "left_out": left_out, "staleness": result.as_dict(),
              "updates": [row.__dict__ for row in rows]}
    (out / "freshness.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    metric = result.metric
    print(f"{len(xs):,} labeled events of {args.file}; {args.model} trained on {args.window:,} events, evaluated on "
          f"the newest {args.eval:,} at {len(points)} points ({points[0]:,} to {points[-1]:,})")
    print(f"\n{'lag':>8}  {metric + ' mean':>14}  {'spread (sd)':>11}  {'vs lag ' + str(result.rows[0].lag):>12}  {'± se':>7}")
    for row in result.rows:
        print(f"{row.lag:>8,}  {row.mean:>14.4f}  {row.sd:>11.4f}  {row.diff_mean:>+12.4f}  {row.diff_se:>7.4f}")
    print(f"\n{'update every':>12}  {'strategy':<10}  {metric:>9}  {'train s':>8}  {'updates':>7}")
    for row in rows:
        print(f"{row.every:>12,}  {row.strategy:<10}  {row.value:>9.4f}  {row.train_seconds:>8.2f}  {row.updates:>7,}")
    print(f"\nplots and numbers in {out}/ (freshness.png, updates.png, freshness.json)")
    return 0
