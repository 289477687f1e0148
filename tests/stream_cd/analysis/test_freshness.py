"""The value of data freshness: fresher windows measurably better on a drifting stream, no trend on a stationary one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_cd.analysis.freshness import staleness_study
from stream_cd.analysis.updates import update_study
from stream_cd.cli import main
from stream_cd.simulate.datasets import generate

LAGS = [0, 2000, 8000, 20000]


def _stream(name: str, n: int = 40_000, seed: int = 3) -> tuple[list[dict], list]:
    events = list(generate(name, n, seed=seed))
    return [e["x"] for e in events], [e["y"] for e in events]


@pytest.fixture(scope="module")
def drifting():
    return _stream("rotating-hyperplane")


@pytest.fixture(scope="module")
def stationary():
    return _stream("hyperplane")


def test_on_a_drifting_stream_fresher_windows_are_measurably_better(drifting):
    result = staleness_study(*drifting, "logreg", lags=LAGS, window=3000, eval_n=1000, points=10)
    rows = {row.lag: row for row in result.rows}
    stalest = rows[20000]
    assert stalest.diff_mean < -0.03  # three points of accuracy or more
    for lag in (8000, 20000):  # and beyond three standard errors of the paired differences
        assert rows[lag].diff_mean < -3 * rows[lag].diff_se, (lag, rows[lag].diff_mean, rows[lag].diff_se)
    assert rows[2000].diff_mean < 0
    means = [rows[lag].mean for lag in LAGS]
    assert means == sorted(means, reverse=True), means  # every step of staleness costs


def test_on_a_stationary_stream_staleness_has_no_trend(stationary):
    result = staleness_study(*stationary, "logreg", lags=LAGS, window=3000, eval_n=1000, points=10)
    for row in result.rows[1:]:
        assert abs(row.diff_mean) <= max(3 * row.diff_se, 0.005), (row.lag, row.diff_mean, row.diff_se)
    assert abs(result.rows[-1].mean - result.rows[0].mean) < 0.01


def test_more_frequent_updates_serve_better_models_and_retraining_costs_more_compute(drifting):
    rows = {(r.strategy, r.every): r for r in update_study(*drifting, "logreg", every=[1000, 20000], window=3000)}
    for strategy in ("stateful", "stateless"):
        assert rows[strategy, 1000].value - rows[strategy, 20000].value > 0.02
    assert rows["stateless", 1000].updates == 37 and rows["stateful", 1000].updates == 37
    # stateless retrains 3,000 events at each of 37 updates; stateful learns each event once
    assert rows["stateless", 1000].train_seconds > 1.5 * rows["stateful", 1000].train_seconds


def test_the_command_prints_both_tables_and_writes_the_plots(tmp_path: Path, capsys):
    stream = tmp_path / "events.jsonl"
    stream.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate("rotating-hyperplane", 12_000, seed=1)))
    out = tmp_path / "out"
    code = main(["freshness", str(stream), "--model", "logreg", "--lags", "0,1000,4000", "--window", "2000",
                 "--eval", "500", "--points", "3", "--update-every", "500,4000", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "lag" in printed and "stateful" in printed and "stateless" in printed
    for name in ("freshness.png", "updates.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = orjson.loads((out / "freshness.json").read_bytes())
    assert [row["lag"] for row in report["staleness"]["rows"]] == [0, 1000, 4000]
    assert len(report["updates"]) == 4


def test_bad_values_are_named(tmp_path: Path, capsys):
    stream = tmp_path / "events.jsonl"
    stream.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate("sea", 3000, seed=1)))
    with pytest.raises(SystemExit):
        main(["freshness", str(stream), "--lags", "0,soon"])
    assert "'0,soon' is not a comma-separated list of whole numbers" in capsys.readouterr().err
    assert main(["freshness", str(stream), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "the stream has 3,000 labeled events" in capsys.readouterr().err
