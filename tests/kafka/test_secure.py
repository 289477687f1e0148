"""A secured cluster (SASL_SSL, SCRAM-SHA-512): the commands with ``--kafka-config`` end to end,
and a wrong password or an untrusted certificate refused with a clear error within seconds.

The broker is the one ``stream-cd kafka up --secure`` starts, in a temporary directory on a
free port, for this module only (the shared test broker is plaintext).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from consumers.admin import broker_cluster_id
from consumers.client_config import load_client_config
from stream_cd.broker import LocalBroker
from stream_cd.broker.config import free_port
from stream_cd.broker.security import ensure_certificates
from tests.kafka.pipeline_helpers import REPO, TEST_STATE_KEY, cli, finish, start_worker

pytestmark = pytest.mark.kafka

EVENTS = 3000
REFUSED_WITHIN_S = 10.0  # a Python start, the preflight login and its refusal: about 2 s here


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, LocalBroker]]:
    """``(bootstrap, client.properties, broker)`` of a secured local broker."""
    if shutil.which("java") is None:
        if os.environ.get("STREAM_CD_REQUIRE_KAFKA") == "1":
            pytest.fail("STREAM_CD_REQUIRE_KAFKA=1 but java is not installed (the secured broker needs it)")
        pytest.skip("java is not installed (the secured local broker needs Java 17)")
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-secure"))

    def probe(bootstrap: str, timeout_s: float) -> str | None:
        return broker_cluster_id(bootstrap, timeout_s, load_client_config(broker.client_properties).options)

    bootstrap = broker.start(probe, port=free_port(), timeout_s=90.0, secure=True)
    try:
        yield bootstrap, broker.client_properties, broker
    finally:
        broker.stop()


def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={"STREAM_CD_STATE_KEY": TEST_STATE_KEY, **os.environ})


def events_file(path: Path) -> Path:
    done = run("generate", "agrawal", "--n", str(EVENTS), "--seed", "3", "--out", str(path))
    assert done.returncode == 0, done.stderr
    return path


def test_the_client_properties_are_private_and_name_the_scram_user(secured):
    _, properties, broker = secured
    assert properties.stat().st_mode & 0o777 == 0o600
    assert (broker.secure_dir / "broker.pem").stat().st_mode & 0o777 == 0o600
    config = load_client_config(properties)
    assert config.options["security_protocol"] == "SASL_SSL"
    assert config.options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config.username == "stream-cd" and len(config.options["sasl_plain_password"]) >= 32


def test_plaintext_clients_get_nothing_from_the_secured_listener(secured):
    bootstrap, _, _ = secured
    assert broker_cluster_id(bootstrap, timeout_s=2.0) is None


def test_replay_worker_decisions_and_checkpoints_through_the_secured_broker(secured, tmp_path, topic_prefix):
    bootstrap, properties, _ = secured
    kafka = ("--bootstrap", bootstrap, "--kafka-config", str(properties))
    done = run("replay", str(events_file(tmp_path / "events.jsonl")), *kafka, "--topic-prefix", topic_prefix)
    assert done.returncode == 0, done.stderr
    assert f"replayed {EVENTS} events" in done.stderr

    worker = start_worker(bootstrap, topic_prefix, "--kafka-config", str(properties), "--worker-id", "w1",
                          "--max-events", str(EVENTS), "--idle-exit", "30", "--version-every", "1000")
    summary, printed, _ = finish(worker)
    assert summary["events"] == EVENTS and summary["invalid"] == 0
    assert summary["models"]["default"]["champion_version"] == "v1.3"  # three checkpoints, exactly-once
    assert [d["action"] for d in printed] == ["checkpoint"] * 3

    done = run("decisions", *kafka, "--topic-prefix", topic_prefix, "--from-beginning")
    assert done.returncode == 0, done.stderr
    read = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [d["decision_id"] for d in read] == [d["decision_id"] for d in printed]

    done = run("checkpoints", *kafka, "--topic-prefix", topic_prefix, "--json")
    assert done.returncode == 0, done.stderr
    versions = {row["key"]: row.get("version") for row in map(orjson.loads, done.stdout.splitlines())}
    assert versions["default"] == "v1.3"


def _refused(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = run(*args, timeout=60.0)
    return done, time.monotonic() - began


def test_a_wrong_password_fails_at_once_naming_the_user_and_the_file(secured, tmp_path, topic_prefix):
    bootstrap, properties, _ = secured
    bad = tmp_path / "wrong.properties"
    text = properties.read_text()
    bad.write_text("\n".join("sasl.password=${WRONG_PASSWORD}" if line.startswith("sasl.password=") else line
                             for line in text.splitlines()) + "\n")
    os.environ["WRONG_PASSWORD"] = "not-the-password"
    try:
        for command in (("decisions", "--from-beginning"), ("worker", "--worker-id", "w1", "--max-events", "1")):
            done, took = _refused(*command, "--bootstrap", bootstrap, "--kafka-config", str(bad),
                                  "--topic-prefix", topic_prefix)
            assert done.returncode == 2, done.stderr
            assert f"authentication failed for user stream-cd at {bootstrap}" in done.stderr
            assert f"check sasl.username and sasl.password in {bad}" in done.stderr
            assert "not-the-password" not in done.stderr
            assert took < REFUSED_WITHIN_S, f"{command[0]} took {took:.1f} s to refuse"
    finally:
        del os.environ["WRONG_PASSWORD"]


def test_an_untrusted_certificate_fails_at_once_naming_the_ca_setting(secured, tmp_path, topic_prefix):
    bootstrap, properties, _ = secured
    other_ca, _ = ensure_certificates(tmp_path / "other", "127.0.0.1")  # a CA that never signed the broker's
    bad = tmp_path / "untrusted.properties"
    bad.write_text("\n".join(f"ssl.ca.location={other_ca}" if line.startswith("ssl.ca.location=") else line
                             for line in properties.read_text().splitlines()) + "\n")
    one = tmp_path / "one.jsonl"
    one.write_text('{"x": {"a": 1.0}, "y": true}\n')
    done, took = _refused("replay", str(one), "--bootstrap", bootstrap, "--kafka-config", str(bad),
                          "--topic-prefix", topic_prefix)
    assert done.returncode == 2, done.stderr
    assert f"the TLS handshake with {bootstrap} failed" in done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert f"check ssl.ca.location in {bad}" in done.stderr
    assert took < REFUSED_WITHIN_S


def test_kafka_up_secure_finds_it_running_and_a_plain_up_is_refused(secured):
    bootstrap, properties, broker = secured
    done = run("kafka", "up", "--secure", "--dir", str(broker.dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"client config (for --kafka-config): {properties}", bootstrap]
    done = run("kafka", "up", "--dir", str(broker.dir))
    assert done.returncode == 2
    assert "holds a secured broker" in done.stderr and "--secure" in done.stderr
