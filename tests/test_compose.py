"""docker/compose.yaml and docker/Dockerfile: the services exist and their commands match the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from stream_cd.cli import build_parser

DOCKER = Path(__file__).resolve().parents[1] / "docker"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _parse(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse reports the bad flag on stderr and exits
        pytest.fail(f"`stream-cd {shlex.join(argv)}` does not parse (exit {exit_.code})")


def test_services_exist(services):
    assert {"kafka", "worker", "decisions"} <= set(services)


def test_kafka_is_apache_kafka_in_kraft_mode(services):
    kafka = services["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert tuple(int(n) for n in re.findall(r"\d+", tag)[:2]) >= (4, 1)
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_worker_command_parses(services):
    args = _parse(_command(services["worker"]))
    assert args.command == "worker"
    assert args.bootstrap == "kafka:9092"
    assert services["worker"]["build"]["dockerfile"] == "docker/Dockerfile"


def test_decisions_command_parses(services):
    args = _parse(_command(services["decisions"]))
    assert args.command == "decisions"
    assert args.bootstrap == "kafka:9092"
    assert args.follow is True


def test_dockerfile_builds_the_worker_image():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r'^ENTRYPOINT \["stream-cd"\]', text, re.M)
