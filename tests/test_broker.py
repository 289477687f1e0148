"""``stream-cd kafka up|down|status`` on the real Maven jars (each start costs a few seconds)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_cd.broker import LocalBroker
from stream_cd.broker.config import free_port
from stream_cd.broker.process import alive
from stream_cd.errors import BrokerError

ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 180.0  # a first start may fetch the jars with Maven


def _need_java() -> None:
    if shutil.which("java") is None and os.environ.get("STREAM_CD_REQUIRE_KAFKA") != "1":
        pytest.skip("java is not installed (the local broker needs Java 17)")


def cli(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream_cd.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def up(directory: Path, port: int) -> str:
    done = cli("kafka", "up", "--port", str(port), "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def down(directory: Path) -> None:
    done = cli("kafka", "down", "--dir", str(directory))
    assert done.returncode == 0, done.stderr


def recorded_pid(directory: Path) -> int:
    return int((directory / "broker.pid").read_text())


def test_missing_java_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerError, match="Java 17"):
        LocalBroker(tmp_path / "k").start(lambda bootstrap, timeout: None)


def test_missing_maven_says_what_to_install(tmp_path, monkeypatch):
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached jars
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerError, match="Maven"):
        LocalBroker(tmp_path / "k").start(lambda bootstrap, timeout: None)


def test_a_start_that_times_out_while_logs_load_says_how_many_and_what_to_do(tmp_path):
    broker = LocalBroker(tmp_path / "k")
    broker.logs_dir.mkdir(parents=True)
    for name in ("a-0", "a-1", "b-0"):
        (broker.data_dir / name).mkdir(parents=True)
    log = broker.logs_dir / "server.log"
    log.write_text("[2026-12-01 21:15:33,000] INFO old start\n")
    start = log.stat().st_size
    assert broker._recovery_hint(log, start) == ""  # nothing since this start: no guess
    with log.open("a") as f:
        f.write("[2026-12-01 21:15:34,373] INFO [LogLoader partition=a-1, dir=/x] Recovering unflushed segment 0.\n")
    hint = broker._recovery_hint(log, start)
    assert "still loading the logs of its 3 partitions" in hint and "--timeout" in hint


@pytest.mark.kafka
def test_up_status_down_and_restart_keeps_topics(tmp_path):
    _need_java()
    from consumers.admin import TopicSpec, broker_cluster_id, ensure_topics

    directory, port = tmp_path / "k", free_port()
    address = up(directory, port)
    assert address == f"127.0.0.1:{port}"
    pid = recorded_pid(directory)
    try:
        cluster_id = json.loads((directory / "broker.json").read_text())["cluster_id"]
        assert broker_cluster_id(address, 10) == cluster_id

        status = cli("kafka", "status", "--dir", str(directory))
        assert status.returncode == 0 and f"running at {address} (pid {pid})" in status.stdout

        again = cli("kafka", "up", "--dir", str(directory))  # idempotent: prints the running address
        assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == address
        other = cli("kafka", "up", "--port", str(free_port()), "--dir", str(directory))
        assert other.returncode == 2 and "already running" in other.stderr

        topic = f"restart.{os.getpid()}"
        assert ensure_topics(address, [TopicSpec(topic, partitions=2)]) == [topic]
    finally:
        down(directory)
    assert not alive(pid)
    assert not (directory / "broker.pid").exists()
    status = cli("kafka", "status", "--dir", str(directory))
    assert status.returncode == 3 and "not running" in status.stdout

    # Same directory again: no re-format, the topic is still there.
    assert up(directory, port) == address
    try:
        assert ensure_topics(address, [TopicSpec(topic, partitions=2, check=True)]) == []
    finally:
        down(directory)


@pytest.mark.kafka
def test_port_taken_fails_fast_with_the_broker_log(tmp_path):
    _need_java()
    directory = tmp_path / "k"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        began = time.monotonic()
        done = cli("kafka", "up", "--port", str(port), "--dir", str(directory), "--timeout", "60")
        took = time.monotonic() - began
    assert done.returncode != 0
    assert took < 60, f"took {took:.0f} s to notice the port is taken"
    assert "stream-cd kafka: error:" in done.stderr
    assert "Address already in use" in done.stderr or "failed to bind" in done.stderr, done.stderr
    assert not (directory / "broker.pid").exists()
    assert LocalBroker(directory).status().running is False


@pytest.mark.kafka
def test_two_brokers_side_by_side(tmp_path):
    _need_java()
    from consumers.admin import broker_cluster_id

    dirs, ports = [tmp_path / "a", tmp_path / "b"], [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    started: list[Path] = []
    try:
        for directory, port in zip(dirs, ports):
            assert up(directory, port) == f"127.0.0.1:{port}"
            started.append(directory)
        ids = [broker_cluster_id(f"127.0.0.1:{port}", 10) for port in ports]
        assert None not in ids and ids[0] != ids[1]
        for directory in dirs:
            assert cli("kafka", "status", "--dir", str(directory)).returncode == 0
    finally:
        pids = [recorded_pid(d) for d in started]
        for directory in started:
            down(directory)
    assert not any(alive(pid) for pid in pids)
