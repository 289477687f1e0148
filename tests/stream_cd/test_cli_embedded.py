"""The command line without a broker: replay on the embedded transport, generate, flags and help."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from stream_cd.cli import build_parser, main
from stream_cd.simulate.datasets import generate


def stream_cd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed ``stream-cd`` entry point (``python -m stream_cd.cli`` as a fallback)."""
    exe = Path(sys.executable).with_name("stream-cd")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stream_cd.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, timeout=timeout)


def write_jsonl(path: Path, events) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.fixture(scope="module")
def phishing_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("cli") / "phishing.jsonl", generate("phishing", 1250))


def test_replay_embedded_summary_equals_progressive_val_score_exactly(phishing_file: Path) -> None:
    run = stream_cd("replay", str(phishing_file), "--model", "logreg", "--drift", "none", "--json")
    assert run.returncode == 0, run.stderr.decode()
    lines = run.stdout.decode().splitlines()
    summary = orjson.loads(lines[-1])["summary"]
    expected = evaluate.progressive_val_score(
        datasets.Phishing(), preprocessing.StandardScaler() | linear_model.LogisticRegression(), metrics.Accuracy()
    ).get()
    model = summary["models"]["default"]
    assert model["metric"] == {"name": "Accuracy", "value": expected}
    assert summary["events"] == 1250 and summary["invalid"] == 0 and model["learned"] == 1250
    assert model["champion_version"] == "v1.0" and model["retrains"] == 0 and model["promotions"] == 0
    assert b"kafka" not in run.stderr.lower()


def test_replay_json_prints_one_decision_a_line_then_the_summary(tmp_path: Path, capsys) -> None:
    path = write_jsonl(tmp_path / "drift.jsonl", generate("agrawal", 12_000, seed=7, drift_at=6_000))
    with open(path, "ab") as f:
        f.write(b"not json\n")
    code = main(["replay", str(path), "--model", "hoeffding-tree", "--shadow", "logreg", "--json", "--no-progress",
                 "--volume-every", "5000"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    *decisions, last = [orjson.loads(line) for line in lines]
    assert list(last) == ["summary"]
    assert last["summary"]["events"] == 12_001 and last["summary"]["invalid"] == 1
    assert decisions, "expected decisions on a drifting stream"
    fields = {"decision_id", "model_key", "action", "trigger", "champion_version", "challenger_version",
              "events_seen", "evidence", "ts"}
    for d in decisions:
        assert fields <= set(d) and d["model_key"] == "default"
    triggers = {d["trigger"] for d in decisions}
    assert "volume" in triggers and "drift" in triggers
    assert [d["events_seen"] for d in decisions] == sorted(d["events_seen"] for d in decisions)


def test_replay_without_json_prints_readable_lines_and_a_table(phishing_file: Path, capsys) -> None:
    assert main(["replay", str(phishing_file), "--drift", "none", "--volume-every", "1000", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "retrain    volume" in out and "events 1250, invalid 0" in out and "Accuracy 0.8928" in out


def test_replay_reads_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "e.csv"
    path.write_text("key,a,label\n" + "".join(f"k{i % 2},{i},{str(i % 3 == 0).lower()}\n" for i in range(40)))
    assert main(["replay", str(path), "--label", "label", "--json", "--drift", "none"]) == 0
    summary = orjson.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert summary["events"] == 40 and set(summary["models"]) == {"k0", "k1"}
    assert summary["models"]["k0"]["learned"] == 20


def test_generate_writes_n_lines_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = stream_cd("generate", "agrawal", "--n", "500", "--seed", "3", "--drift-at", "250")
    b = stream_cd("generate", "agrawal", "--n", "500", "--seed", "3", "--drift-at", "250")
    c = stream_cd("generate", "agrawal", "--n", "500", "--seed", "4", "--drift-at", "250")
    assert a.returncode == b.returncode == c.returncode == 0
    lines = a.stdout.splitlines()
    assert len(lines) == 500 and a.stdout.endswith(b"\n")
    assert hashlib.sha256(a.stdout).digest() == hashlib.sha256(b.stdout).digest() != hashlib.sha256(c.stdout).digest()
    assert [orjson.loads(line) for line in lines] == list(generate("agrawal", 500, seed=3, drift_at=250))
    out = tmp_path / "sea.jsonl"
    assert main(["generate", "sea", "--n", "40", "--seed", "1", "--key", "shop", "--out", str(out)]) == 0
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(events) == 40 and {e["key"] for e in events} == {"shop"}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["replay", "{file}", "--alpha", "1.5"], "1.5"),
        (["replay", "{file}", "--alpha", "abc"], "'abc'"),
        (["replay", "{file}", "--min-sample", "abc"], "'abc'"),
        (["replay", "{file}", "--min-sample", "0"], "0 must be at least 1"),
        (["replay", "{file}", "--max-pending", "0"], "0 must be at least 1"),
        (["replay", "{file}", "--rate", "-3"], "-3"),
        (["replay", "{file}", "--drift", "ddm"], "'ddm'"),
        (["replay", "{file}", "--on-drift", "panic"], "'panic'"),
        (["replay", "{file}", "--task", "clustering"], "'clustering'"),
        (["replay", "{file}", "--model", "forest"], "'forest'"),
        (["replay", "{file}", "--shadow", "nope.module:Thing"], "nope.module"),
        (["replay", "{file}", "--volume-every", "5", "--volume-growth", "10"], "not allowed with"),
        (["replay", "{missing}"], "no such file"),
        (["generate", "agrawal", "--n", "-3"], "--n -3"),
        (["generate", "agrawal", "--n", "10", "--drift-at", "10"], "--drift-at 10"),
        (["generate", "elec2"], "'elec2'"),
        (["generate", "agrawal", "--seed", "x"], "'x'"),
        (["serve", "--bootstrap", "127.0.0.1:1", "--timeout", "inf"], "inf must be positive and finite"),
        (["kafka", "up", "--timeout", "-1"], "-1.0 must be positive"),
        (["kafka", "down", "--timeout", "0"], "0.0 must be positive"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_value(argv, named: str, phishing_file: Path, tmp_path: Path, capsys) -> None:
    argv = [a.format(file=phishing_file, missing=tmp_path / "missing.jsonl") for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    captured = capsys.readouterr()
    assert named in captured.err
    assert "Traceback" not in captured.err and '"summary"' not in captured.out


def test_bad_flag_through_the_entry_point_exits_2(phishing_file: Path) -> None:
    run = stream_cd("replay", str(phishing_file), "--alpha", "1.5")
    assert run.returncode == 2 and b"--alpha: 1.5 must lie strictly between 0 and 1" in run.stderr and b"Traceback" not in run.stderr


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) pair under the top-level parser, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _commands(sub, path + (name,))


COMMANDS = list(_commands(build_parser()))


def test_every_command_of_the_design_is_there() -> None:
    names = {path for path, _ in COMMANDS}
    for command in [("worker",), ("replay",), ("decisions",), ("generate",), ("serve",), ("kafka",),
                    ("kafka", "up"), ("kafka", "down"), ("kafka", "status"),
                    ("experiment", "start"), ("experiment", "status"), ("experiment", "stop")]:
        assert command in names


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_of_each_command_mentions_every_flag(path, parser: argparse.ArgumentParser, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main([*path, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    assert "--help" in flags
    for flag in flags:
        assert flag in text, f"{' '.join(path)} --help does not mention {flag}"
    for action in parser._actions:
        if action.option_strings and action.help is not None and action.dest != "help":
            assert action.help != argparse.SUPPRESS and action.help.strip(), f"{action.option_strings} has no help text"


def test_issue_flags_are_on_worker_and_replay() -> None:
    parsers = dict(COMMANDS)
    worker_flags = {s for a in parsers[("worker",)]._actions for s in a.option_strings}
    for flag in ["--bootstrap", "--topic", "--group", "--model", "--shadow", "--drift", "--on-drift", "--max-events",
                 "--idle-exit", "--json", "--topic-prefix", "--task"]:
        assert flag in worker_flags
    replay_flags = {s for a in parsers[("replay",)]._actions for s in a.option_strings}
    for flag in ["--bootstrap", "--topic", "--rate", "--model", "--shadow", "--drift", "--on-drift", "--json"]:
        assert flag in replay_flags
    generate_flags = {s for a in parsers[("generate",)]._actions for s in a.option_strings}
    assert {"--n", "--seed", "--drift-at"} <= generate_flags


def test_replay_experiment_applies_a_definition_at_the_start_and_refuses_a_bad_one(phishing_file: Path, tmp_path: Path) -> None:
    good = tmp_path / "ab.json"
    good.write_bytes(orjson.dumps({"key": "default", "experiment": {
        "name": "ab-1", "kind": "ab", "unit": "request", "arms": [{"name": "tree", "spec": "hoeffding-tree"}]}}))
    run = stream_cd("replay", str(phishing_file), "--experiment", str(good), "--json", "--drift", "none")
    assert run.returncode == 0, run.stderr.decode()
    lines = [orjson.loads(line) for line in run.stdout.splitlines()]
    start = lines[0]
    assert (start["action"], start["experiment"], start["trigger"]) == ("start", "ab-1", "experiment")
    assert start["evidence"]["sample_size"]["units"] > 0 and start["traffic"] == {"control": 0.5, "tree": 0.5}
    summary = lines[-1]["summary"]["models"]["default"]
    assert summary["experiment"]["experiment"] == "ab-1" and summary["learned"] == 1250
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"experiment": {"name": "x", "kind": "ab", "arms": [{"name": "b", "spec": "nope"}]}}))
    refused = stream_cd("replay", str(phishing_file), "--experiment", str(bad))
    assert refused.returncode == 2 and b"unknown model spec 'nope'" in refused.stderr and not refused.stdout


def test_experiment_start_refuses_a_bad_definition_before_any_broker_is_asked() -> None:
    run = stream_cd("experiment", "start", "--bootstrap", "127.0.0.1:1", "--key", "k", "--name", "ab-1",
                    "--kind", "ab", "--arm", "b=logreg", "--weights", "50,30,20")
    assert run.returncode == 2 and b"3 weights for 2 arms" in run.stderr and b"Traceback" not in run.stderr


def test_replay_of_requests_and_feedback_500_events_late_equals_progressive_val_score_with_delay(tmp_path: Path) -> None:
    from river import stream

    lines = []
    for i, x, y in stream.simulate_qa(datasets.Phishing(), moment=None, delay=500):
        lines.append({"id": f"r{i}", "x": x} if y is None else {"id": f"r{i}", "y": y})
    run = stream_cd("replay", str(write_jsonl(tmp_path / "qa.jsonl", lines)), "--model", "logreg", "--drift", "none", "--json")
    assert run.returncode == 0, run.stderr.decode()
    model = orjson.loads(run.stdout.splitlines()[-1])["summary"]["models"]["default"]
    expected = evaluate.progressive_val_score(datasets.Phishing(), preprocessing.StandardScaler() | linear_model.LogisticRegression(),
                                              metrics.Accuracy(), delay=500).get()
    assert model["metric"]["value"] == expected and model["learned"] == 1250 and model["feedback"]["joined"] == 1250
