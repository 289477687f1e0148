"""The command line of issue 16 without a broker: `generate ranking`, replay with an interleave
experiment, `experiment start --kind interleave` and `status`."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from stream_cd.cli import build_parser, main
from stream_cd.cli.experiment import _row, _text, definition_from_args, latest_status
from stream_cd.errors import ConfigError

ITEM_ONLY = "tests.stream_cd.user_models:item_only_ranker"
FLAGS = ["--model", ITEM_ONLY, "--drift", "none"]


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ranking") / "il.json"
    path.write_bytes(orjson.dumps({"key": "search", "experiment": {
        "name": "il-1", "kind": "interleave", "arms": [{"name": "smart", "spec": "logreg"}]}}))
    return path


def generate(path: Path, *extra: str) -> list[dict]:
    assert main(["generate", "ranking", "--n-users", "150", "--queries-per-user", "4", "--items", "300", "--seed",
                 "11", "--key", "search", "--feedback-delay", "0:30", "--out", str(path), *extra]) == 0
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_generate_ranking_is_the_population_served_by_the_flags_and_replays_the_same(
        tmp_path: Path, experiment_file: Path, capsys) -> None:
    events = generate(tmp_path / "a.jsonl", *FLAGS, "--experiment", str(experiment_file))
    again = generate(tmp_path / "b.jsonl", *FLAGS, "--experiment", str(experiment_file))
    assert events == again
    requests = [e for e in events if "items" in e]
    clicks = [e for e in events if "clicked" in e]
    assert len(requests) == len(clicks) == 600 and {len(e["items"]) for e in requests} == {20}
    assert {e["k"] for e in requests} == {10} and len({e["user"] for e in requests}) == 150
    assert sum(map(len, (e["clicked"] for e in clicks))) > 300
    capsys.readouterr()

    predictions = tmp_path / "served.jsonl"
    code = main(["replay", str(tmp_path / "a.jsonl"), *FLAGS, "--experiment", str(experiment_file), "--json",
                 "--no-progress", "--predictions", str(predictions)])
    assert code == 0
    *decisions, last = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = last["summary"]
    assert summary["invalid"] == 0 and summary["events"] == 1 + 1200  # every click was on what replay served
    assert [(d["action"], d["arm"]) for d in decisions if d["action"] != "checkpoint"] == [("start", None), ("promote", "smart")]
    model = summary["models"]["search"]
    assert model["task"] == "ranking" and model["champion_spec"] == "logreg" and model["feedback"]["joined"] == 600
    served = [orjson.loads(line) for line in predictions.read_bytes().splitlines()]
    assert len(served) == 600 and all(len(s["ranking"]) == 10 for s in served)
    first = served[0]
    assert first["experiment"] == "il-1" and first["arm"] == "interleaved" and first["versions"] == {"control": "v1.0", "smart": "v2.0"}
    assert sorted(item["arm"] for item in first["ranking"]) == ["control"] * 5 + ["smart"] * 5
    by_id = {e["id"]: e for e in requests}
    assert all({item["id"] for item in s["ranking"]} <= {i["id"] for i in by_id[s["id"]]["items"]} for s in served)

    # replayed by another service, the clicks are on lists it did not serve: dead letters say so
    capsys.readouterr()
    assert main(["replay", str(tmp_path / "a.jsonl"), "--drift", "none", "--json", "--no-progress"]) == 0
    other = orjson.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert other["invalid"] > 0


@pytest.mark.parametrize(("argv", "named"), [
    (["generate", "ranking", "--items", "1"], "--items 1"),
    (["generate", "ranking", "--items", "10", "--candidates", "20"], "--candidates 20"),
    (["generate", "ranking", "--queries-per-user", "0"], "0 must be at least 1"),
    (["generate", "ranking", "--feedback-delay", "5:2"], "feedback delay '5:2'"),
])
def test_bad_generate_ranking_flags_exit_2_naming_the_value(argv: list[str], named: str, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    assert code == 2 and named in capsys.readouterr().err


def start_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["experiment", "start", "--bootstrap", "b:1", "--key", "search", "--name", "il-1",
                                      "--kind", "interleave", "--arm", "smart=logreg", *extra])


def test_experiment_start_kind_interleave_makes_a_checked_definition() -> None:
    definition = definition_from_args(start_args("--max-sample", "5000", "--alpha", "0.01"))
    assert (definition["kind"], definition["arms"], definition["max_sample"], definition["alpha"]) == (
        "interleave", [{"name": "smart", "spec": "logreg"}], 5000, 0.01)
    with pytest.raises(ConfigError, match="weights are for A/B/n tests"):
        definition_from_args(start_args("--weights", "50,50"))
    with pytest.raises(ConfigError, match="exactly one arm, not 2"):
        definition_from_args(start_args("--arm", "other=logreg"))


def test_experiment_status_shows_wins_losses_ties_and_the_p_value() -> None:
    evidence = {"experiment": "il-1", "kind": "interleave", "state": "done", "winner": "control",
                "reason": "the champion is better", "traffic": {"control": 1.0, "smart": 1.0}, "impressions": 900,
                "wins": 120, "losses": 190, "ties": 40, "no_clicks": 550, "p_value": 0.031,
                "arms": {"control": {"requests": 900, "metric": 0.41}, "smart": {"requests": 900, "metric": 0.30,
                                                                                 "p_value": 1.0, "p_value_worse": 0.016}}}
    decision = {"decision_id": "search:0-9:experiment:stop", "model_key": "search", "experiment": "il-1",
                "action": "stop", "trigger": "experiment", "evidence": evidence, "traffic": evidence["traffic"]}
    (key, name), latest = next(iter(latest_status([decision]).items()))
    row = _row(key, name, latest)
    assert row["state"] == "the champion is better" and (row["wins"], row["losses"], row["ties"]) == (120, 190, 40)
    text = _text(row)
    assert "search / il-1 (interleave): the champion is better" in text
    assert "impressions 900: wins 120, losses 190, ties 40, without clicks 550; always-valid p 0.031" in text
