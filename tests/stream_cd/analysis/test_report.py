"""`stream-cd report` on a recorded drifting run with a promotion: the HTML and what its plot is drawn from."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import struct
from pathlib import Path

import orjson
import pytest

from stream_cd.analysis.timeline import read_run_file
from stream_cd.cli import main
from stream_cd.simulate.datasets import generate

DRIFT_AT = 15_000


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """What `replay --json` printed for a hyperplane stream whose concept changes at 15,000."""
    folder = tmp_path_factory.mktemp("run")
    events = folder / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generate("hyperplane", 30_000, seed=7, drift_at=DRIFT_AT)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["replay", str(events), "--json", "--no-progress", "--version-every", "500"]) == 0
    run = folder / "run.jsonl"
    run.write_text(out.getvalue())
    return run


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_is_one_self_contained_file_with_the_plot_embedded(recorded, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--from", str(recorded), "--out", str(out)]) == 0
    page = out.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1
    width, height = _png_size(base64.b64decode(images[0]))
    assert width > 800 and height > 300
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing to fetch
    assert "promotion: v2 serves" in page and "drift alarm" in page
    assert page.count("<tr class=checkpoint>") == 60


def test_the_plot_shows_the_drift_and_then_the_promotion(recorded):
    key = read_run_file(recorded).keys["default"]
    drift = [m.at for m in key.marks if m.kind == "drift"]
    promotions = [m.at for m in key.marks if m.kind == "promotion"]
    assert drift and promotions and DRIFT_AT <= drift[0] < promotions[0] < DRIFT_AT + 3000
    old = dict(key.series[1])
    before = [v for at, v in old.items() if DRIFT_AT - 3000 <= at <= DRIFT_AT]
    after = [v for at, v in old.items() if DRIFT_AT < at <= promotions[0]]
    assert min(before) - min(after) > 0.05  # the old champion's accuracy falls at the change
    new = dict(key.series[2])
    at_promotion = min(at for at in new if at >= promotions[0])
    assert new[at_promotion] > old[at_promotion]  # and the retrain it promotes was doing better
    served_after = [v for at, v in key.served if at > promotions[0]]
    assert served_after == [v for at, v in sorted(new.items()) if at > promotions[0]]
    [experiment] = [x for x in key.experiments if x.challenger == "v2"]
    assert experiment.outcome == "promoted" and experiment.trigger == "drift" and experiment.p_value < 0.01


def test_the_decisions_command_output_and_bad_inputs(recorded, tmp_path, capsys):
    decisions_only = tmp_path / "decisions.jsonl"  # what `stream-cd decisions` prints: no summary line
    decisions_only.write_text("".join(line + "\n" for line in recorded.read_text().splitlines()[:-1]))
    assert main(["report", "--from", str(decisions_only), "--out", str(tmp_path / "r.html")]) == 0
    assert main(["report", "--from", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r.html")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("not json\n")
    assert main(["report", "--from", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "r.html")]) == 2
    assert "holds no decisions" in capsys.readouterr().err
    assert main(["report", "--from", str(recorded), "--key", "nope", "--out", str(tmp_path / "r.html")]) == 2
    assert "model key 'nope' has no decisions" in capsys.readouterr().err


def test_an_ab_test_reads_as_an_experiment_with_its_traffic_and_winner(tmp_path):
    from tests.stream_cd.test_experiments import config, recurring_stream, run

    _, decisions, _ = run(config("off"), recurring_stream())
    path = tmp_path / "ab.jsonl"
    path.write_bytes(b"".join(d.to_json() + b"\n" for d in decisions))
    key = read_run_file(path).keys["k"]
    [ab] = [x for x in key.experiments if x.name == "fresh-on-b"]
    assert ab.outcome == "promoted fresh" and ab.traffic == {"control": 0.5, "fresh": 0.5} and ab.born == 6001
    kinds = [m.kind for m in key.marks]
    assert kinds.index("experiment") < kinds.index("promotion")
    assert 2 in key.series  # the fresh arm's rolling metric, drawn as its own model
    out = tmp_path / "ab.html"
    assert main(["report", "--from", str(path), "--out", str(out)]) == 0
    assert "fresh-on-b" in out.read_text()
