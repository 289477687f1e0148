"""``stream-cd generate``: synthetic and bundled event streams as JSONL.

``generate ranking`` writes a simulated population searching a ranking service
(:mod:`stream_cd.simulate.ranking`): ranking requests and, a few requests
later, their clicks. A click depends on where the item was shown, so the
simulated users click on what a service actually served them: an in-process
pipeline with the model flags given here (and the experiment of
``--experiment``) serves each request and learns from the clicks as they come,
exactly as ``stream-cd replay FILE`` or a worker with the same flags (and the
same experiment started before the first event) will, so the clicks in the
file are the clicks on what they serve.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import orjson

from stream_cd.cli.options import add_model_flags, config_from_args, non_negative_float, positive_int
from stream_cd.errors import ConfigError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    from stream_cd.simulate.datasets import GENERATORS
    from stream_cd.simulate.population import DEPARTURES

    p = commands.add_parser(
        "generate",
        help="write a synthetic or bundled event stream as JSONL",
        description="Write events from River's generators and bundled datasets as JSONL, one event a line. "
        "--drift-at K switches abruptly to another concept at event K. " + __doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument("name", choices=sorted([*GENERATORS, "sessions", "ranking"]),
                   help="the stream; sessions: a simulated population of users, each departing from the global "
                   "pattern in their own way; ranking: users searching a ranking service, with position-biased clicks")
    p.add_argument("--n", type=int, default=10_000, metavar="N", help="number of events (default: 10000)")
    p.add_argument("--seed", type=int, default=42, metavar="S", help="random seed (default: 42)")
    p.add_argument("--drift-at", type=int, metavar="K", help="abrupt concept change at event K")
    p.add_argument("--key", default="default", metavar="K", help="model key of every event (default: default)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--feedback-delay", metavar="N|MIN:MAX",
                   help="write each labeled event as a request and, N (or MIN to MAX, uniformly) requests later, its "
                   "feedback (id and y), as labels reach a production system; default: labeled events. ranking: the "
                   "clicks of each request come this many requests later (default: 1:50)")
    p.add_argument("--n-users", type=positive_int, default=1000, metavar="U",
                   help="sessions: number of users, one session each; ranking: number of users (default: 1000)")
    p.add_argument("--events-per-session", type=positive_int, default=30, metavar="K", help="sessions: labeled events per session (default: 30)")
    p.add_argument("--departure", choices=DEPARTURES, help="sessions: how users depart from the global pattern: "
                   "their base rate (bias), their feature weights (weights) or both; default: the issue-5 mix "
                   "(base rate spread 2.0, weights 0.7, genre tastes 1.0 in logits)")
    p.add_argument("--departure-scale", type=non_negative_float, metavar="S",
                   help="sessions: size of each user's departure relative to the global pattern: weights move by "
                   "S times the global weights' size, the base rate by S times the global logit's spread "
                   "(default: 1.0; --departure defaults to both when only this is given)")
    r = p.add_argument_group("ranking (the model flags below shape the service that serves the simulated users: "
                             "replay the file with the same ones)")
    r.add_argument("--queries-per-user", type=positive_int, default=10, metavar="Q", help="ranking requests of each user (default: 10)")
    r.add_argument("--items", type=positive_int, default=1000, metavar="I", help="items in the catalogue (default: 1000)")
    r.add_argument("--candidates", type=positive_int, default=20, metavar="C",
                   help="candidates of each request, drawn from the items (default: 20)")
    r.add_argument("--k", type=positive_int, default=10, metavar="K", help="length of the list served for each request (default: 10)")
    r.add_argument("--experiment", metavar="FILE.json",
                   help="start this experiment before the first request, as `stream-cd replay --experiment FILE.json` "
                   "will (the file does not contain it)")
    add_model_flags(p)
    p.set_defaults(run=_generate)


def _departure(args: argparse.Namespace) -> dict[str, Any]:
    """The population options of ``--departure`` and ``--departure-scale`` (none: the default mix)."""
    if args.departure is None and args.departure_scale is None:
        return {}
    scale = 1.0 if args.departure_scale is None else args.departure_scale
    return {"departure": args.departure or "both", "departure_scale": scale}


def _generate(args: argparse.Namespace) -> int:
    from stream_cd.simulate.datasets import generate

    if args.name == "ranking":
        events: Iterator[dict[str, Any]] = _ranking(args)
    elif args.name == "sessions":
        from stream_cd.simulate.population import sessions_population

        events = sessions_population(args.n_users, args.events_per_session, args.seed, key=args.key,
                                     **_departure(args))
    else:
        events = generate(args.name, args.n, args.seed, args.drift_at, args.key)
    if args.feedback_delay and args.name != "ranking":
        from stream_cd.simulate.feedback import delayed_feedback, parse_delay

        low, high = parse_delay(args.feedback_delay)
        events = delayed_feedback(events, low, high, seed=args.seed)
    out = open(args.out, "wb") if args.out else sys.stdout.buffer
    try:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
    return 0


def _ranking(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The ranking population, served by an in-process pipeline with the model flags."""
    from stream_cd.cli.pipeline import experiment_starts
    from stream_cd.pipeline import Pipeline
    from stream_cd.simulate.feedback import parse_delay
    from stream_cd.simulate.ranking import ranking_events

    pipeline = Pipeline(config_from_args(args))
    for message in experiment_starts(args.experiment) if args.experiment else []:
        refused = pipeline.process(message, ts=0).invalid
        if refused:
            raise ConfigError(f"--experiment {args.experiment}: {refused}")

    def take(event: dict[str, Any]) -> Any:
        outcome = pipeline.process(orjson.dumps(event), ts=event["ts"])
        if outcome.invalid:
            raise ConfigError(f"the service refused {event['id']!r}: {outcome.invalid}")
        return outcome.prediction

    low, high = parse_delay(args.feedback_delay or "1:50")
    return ranking_events(args.n_users, args.queries_per_user, args.items, args.seed, serve=take, feedback=take,
                          min_delay=low, max_delay=high, key=args.key, candidates=args.candidates, k=args.k)
