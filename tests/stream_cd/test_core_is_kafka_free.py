"""The core never imports Kafka (DESIGN.md: "nothing here imports kafka"), nor prometheus_client
outside the one module that serves the metrics (stream_cd.observe.exporter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

import stream_cd

CHECK = textwrap.dedent(
    """
    import importlib, pkgutil, sys, json
    import stream_cd
    names = sorted(
        m.name for m in pkgutil.walk_packages(stream_cd.__path__, "stream_cd.")
        if not m.name.startswith(("stream_cd.cli", "stream_cd.broker", "stream_cd.observe.exporter"))
    )
    for name in names:
        importlib.import_module(name)
    kafka = sorted(m for m in sys.modules if m == "kafka" or m.startswith("kafka."))
    edges = sorted(m for m in sys.modules if m.split(".")[0] in ("consumers", "producers"))
    prometheus = sorted(m for m in sys.modules if m.split(".")[0] == "prometheus_client")
    print(json.dumps({"imported": names, "kafka": kafka, "edges": edges, "prometheus": prometheus}))
    """
)


def run_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return orjson.loads(done.stdout.splitlines()[-1])


def test_importing_every_core_module_does_not_import_kafka() -> None:
    result = run_python(CHECK)
    expected = {"stream_cd.events", "stream_cd.model_key", "stream_cd.pipeline", "stream_cd.worker", "stream_cd.embedded",
                "stream_cd.evaluation.paired", "stream_cd.learning.drift", "stream_cd.sources", "stream_cd.simulate.datasets"}
    assert expected <= set(result["imported"])
    assert len(result["imported"]) >= len(list(Path(stream_cd.__file__).parent.glob("*.py"))) - 1
    assert result["kafka"] == []
    assert result["edges"] == []
    assert "stream_cd.observe.metrics" in result["imported"] and result["prometheus"] == []


def test_an_embedded_replay_runs_without_importing_kafka(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"x": {"a": 1}, "y": true}\nnot json\n')
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        from stream_cd.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["replay", {str(path)!r}, "--json", "--no-progress"])
        print(json.dumps({{"code": code, "last": out.getvalue().splitlines()[-1],
                          "kafka": sorted(m for m in sys.modules if m == "kafka" or m.startswith("kafka."))}}))
        """
    )
    result = run_python(code)
    assert result["code"] == 0 and result["kafka"] == []
    assert orjson.loads(result["last"])["summary"]["invalid"] == 1
