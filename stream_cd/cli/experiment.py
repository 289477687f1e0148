"""``stream-cd experiment start|status|stop``: experiments as control messages in the events topic.

An experiment starts and stops at one definite point of its model key's stream:
``start`` and ``stop`` produce a control message keyed by the model key into
the events topic, where every worker meets it at the same place, after a
rebalance and on replay. The definition is checked here, and again by the
worker (a dead letter with the reason), and is never half-applied. ``status``
reads the decisions topic (read_committed) and shows each experiment's latest
state: arms, traffic, units and requests per arm, each arm's metric with its
confidence sequence, the always-valid p-values, the sample size still needed; for
an interleaving experiment the impressions, wins, losses and ties.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from stream_cd.cli.options import add_kafka_flags, add_topic_flags, kafka_options, positive_float, positive_int, probability
from stream_cd.errors import ConfigError
from stream_cd.evaluation.definition import KINDS, UNITS, ExperimentDefinition
from stream_cd.evaluation.interleave import CHAMPION_WINS
from stream_cd.transport import Topics

__all__ = ["register", "definition_from_args", "control_message", "latest_status"]


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("experiment", help="start, follow and stop A/B/n tests, canary releases and interleaving",
                            description=__doc__.split("\n\n")[1].replace("\n", " "))
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    start = verbs.add_parser("start", help="start an experiment on a model key",
                             description="Produce a start control message for the model key into the events topic.")
    _common(start)
    start.add_argument("--kind", choices=KINDS, required=True,
                       help="ab: A/B/n test; canary: a ramp of one arm; interleave: every ranking request is served a "
                       "team-draft interleaving of the champion's and one arm's rankings (a key of ranking requests)")
    start.add_argument("--arm", action="append", required=True, metavar="NAME=SPEC",
                       help="an arm besides the control (the champion): a name and a model spec; repeat for A/B/n")
    start.add_argument("--weights", type=_numbers, metavar="W,W,...",
                       help="A/B/n: the control's share first, then each arm's (default: equal)")
    start.add_argument("--unit", choices=UNITS, default="user",
                       help="what is assigned to an arm and stays there: the event's user (or session), its "
                       "session (or user), or each request (default: user)")
    start.add_argument("--alpha", type=probability, default=0.05, help="family-wise level of the tests (default: 0.05)")
    start.add_argument("--mde", type=positive_float, default=0.02,
                       help="minimum detectable effect in the metric, for the sample size (default: 0.02)")
    start.add_argument("--power", type=probability, default=0.8, help="power the sample size is for (default: 0.8)")
    start.add_argument("--max-sample", type=positive_int, default=200_000, metavar="N",
                       help="A/B/n: units, interleave: impressions, after which it ends with no significant "
                       "difference (default: 200000)")
    start.add_argument("--ramp", type=_numbers, metavar="P,P,...", help="canary: percent steps (default: 1,5,25,50,100)")
    start.add_argument("--guardrail-margin", type=positive_float, default=0.02, metavar="M",
                       help="canary: how much worse than the champion it may be and still advance (default: 0.02)")
    start.add_argument("--step-min-sample", type=positive_int, default=500, metavar="N",
                       help="canary: its requests at a step before it may advance (default: 500)")
    start.add_argument("--learn", choices=("all", "own"), default="all",
                       help="all: every arm learns from every labeled event; own: only from what it served (default: all)")
    start.set_defaults(run=_start)
    stop = verbs.add_parser("stop", help="stop an experiment", description="Produce a stop control message.")
    _common(stop)
    stop.set_defaults(run=_stop)
    status = verbs.add_parser("status", help="the latest state of each experiment, from the decisions topic",
                              description="Read <prefix>.decisions (read_committed) and print each experiment's latest state.")
    add_kafka_flags(status)
    add_topic_flags(status, events=False)
    status.add_argument("--key", metavar="K", help="only the experiments of model key K")
    status.add_argument("--json", action="store_true", help="one JSON object per experiment")
    status.set_defaults(run=_status)


def _common(p: argparse.ArgumentParser) -> None:
    add_kafka_flags(p)
    add_topic_flags(p)
    p.add_argument("--key", required=True, metavar="K", help="the model key")
    p.add_argument("--name", required=True, metavar="N", help="the experiment's name, unique within the key")


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def definition_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment object a start message carries, checked (ConfigError names what is wrong)."""
    arms = []
    for text in args.arm:
        name, sep, spec = text.partition("=")
        if not sep or not name or not spec:
            raise ConfigError(f"--arm {text!r} must be NAME=SPEC, like b=hoeffding-tree")
        arms.append({"name": name, "spec": spec})
    values: dict[str, Any] = {"name": args.name, "kind": args.kind, "arms": arms, "unit": args.unit,
                              "alpha": args.alpha, "mde": args.mde, "power": args.power, "learn": args.learn}
    if args.kind in ("ab", "interleave"):
        values["max_sample"] = args.max_sample
        if args.weights:
            values["weights"] = args.weights  # refused for interleave, with the reason
    else:
        values.update(guardrail_margin=args.guardrail_margin, step_min_sample=args.step_min_sample)
        if args.ramp:
            values["ramp"] = args.ramp
    return ExperimentDefinition.from_mapping(values).to_dict()


def control_message(key: str, action: str, experiment: dict[str, Any]) -> bytes:
    return orjson.dumps({"key": key, "control": action, "experiment": experiment})


def _send(args: argparse.Namespace, message: bytes) -> None:
    from producers.replay import replay_to_kafka

    topic = Topics(args.topic_prefix, args.topic or "").events
    replay_to_kafka([message], args.bootstrap, topic, client_options=kafka_options(args))
    print(f"sent {orjson.loads(message)['control']} of experiment {args.name!r} for model key {args.key!r} to {topic}",
          file=sys.stderr)


def _start(args: argparse.Namespace) -> int:
    _send(args, control_message(args.key, "start", definition_from_args(args)))
    return 0


def _stop(args: argparse.Namespace) -> int:
    _send(args, control_message(args.key, "stop", {"name": args.name}))
    return 0


def latest_status(decisions: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each experiment's latest decision, by (model key, experiment).

    >>> latest_status([{"model_key": "k", "experiment": "a", "action": "start", "evidence": {}},
    ...                {"model_key": "k", "experiment": None, "action": "checkpoint", "evidence": {}},
    ...                {"model_key": "k", "experiment": "a", "action": "keep", "evidence": {"state": "running"}}])
    {('k', 'a'): {'model_key': 'k', 'experiment': 'a', 'action': 'keep', 'evidence': {'state': 'running'}}}
    """
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for d in decisions:
        if d.get("experiment"):
            latest[(d["model_key"], d["experiment"])] = d
    return latest


def _status(args: argparse.Namespace) -> int:
    from consumers.subscribe import subscribe_decisions

    decisions = list(subscribe_decisions(args.bootstrap, Topics(args.topic_prefix).decisions, from_beginning=True,
                                         follow=False, key=args.key, client_options=kafka_options(args)))
    for (key, name), d in sorted(latest_status(decisions).items()):
        row = _row(key, name, d)
        print(orjson.dumps(row).decode() if args.json else _text(row))
    return 0


def _row(key: str, name: str, d: dict[str, Any]) -> dict[str, Any]:
    e = d.get("evidence") or {}
    reason = e.get("reason")
    ended = {"promote": "promoted", "rollback": "rolled back", "start": "running",
             "stop": reason if reason in ("no significant difference", CHAMPION_WINS) else "stopped",
             "hold": "paused: sample ratio mismatch" if d["trigger"] == "srm" else "held: the winner forgot older data"}
    state = ended.get(d["action"]) or e.get("state") or d["action"]
    return {"model_key": key, "experiment": name, "kind": e.get("kind") or e.get("definition", {}).get("kind"),
            "state": state, "last_action": d["action"], "traffic": d.get("traffic") or e.get("traffic"),
            "units": e.get("units"), "arms": e.get("arms"), "sample_size": e.get("sample_size"),
            "units_still_needed": e.get("units_still_needed"), "step": e.get("step"), "decision_id": d["decision_id"],
            **({key: e.get(key) for key in ("impressions", "wins", "losses", "ties", "no_clicks", "p_value")}
               if "impressions" in e else {})}


def _text(row: dict[str, Any]) -> str:
    lines = [f"{row['model_key']} / {row['experiment']} ({row['kind']}): {row['state']} (last: {row['last_action']})"]
    if row["traffic"]:
        lines.append("  traffic: " + ", ".join(f"{arm} {share:.0%}" for arm, share in row["traffic"].items()))
    for arm, a in (row["arms"] or {}).items():
        if not isinstance(a, dict):
            continue
        metric, ci = a.get("metric", a.get("mean")), a.get("ci")
        text = f"  {arm:<12} requests {a.get('requests', a.get('n', 0)):>8,}"
        if metric is not None:
            text += f"  metric {metric:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
        if a.get("p_value") is not None:
            text += f"  p {a['p_value']:.4g} (worse {a['p_value_worse']:.4g})"
        lines.append(text)
    if row.get("impressions") is not None:
        lines.append(f"  impressions {row['impressions']:,}: wins {row['wins']:,}, losses {row['losses']:,}, ties "
                     f"{row['ties']:,}, without clicks {row['no_clicks']:,}; always-valid p {row['p_value']:.4g}")
    if row["sample_size"]:
        lines.append(f"  sample size {row['sample_size']['units']:,} units (fixed horizon "
                     f"{row['sample_size']['fixed_horizon_units']:,}); still needed {row['units_still_needed'] or 0:,}")
    return "\n".join(lines)
