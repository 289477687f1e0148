"""docker/: the image, the compose stack, Prometheus and Grafana, checked against the CLI and the exporter.

Everywhere: the services' commands parse with the CLI's own parser, the Kafka
version is the one `stream-cd kafka up` runs, Prometheus scrapes exactly the
workers' metrics ports, and every series the Grafana dashboard queries is one
the worker exposes. Where a Docker engine answers a ping, the stack itself is
brought up (test_the_stack_comes_up_and_learns); elsewhere that test is skipped.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from stream_cd.broker.jars import kafka_version
from stream_cd.cli import build_parser
from stream_cd.observe.exporter import SERIES

DOCKER = Path(__file__).resolve().parents[1] / "docker"
WORKERS = ("worker-1", "worker-2")


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
    assert {"kafka", "kafka-init", *WORKERS, "decisions", "prometheus", "grafana"} <= set(services)


def test_kafka_is_the_version_of_stream_cd_kafka_up_in_kraft_mode(services):
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"
    assert services["kafka-init"]["image"] == kafka["image"]
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] == "1"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_the_events_topic_is_made_with_a_partition_for_each_worker_to_share(services):
    command = _command(services["kafka-init"])
    topic = command[command.index("--topic") + 1]
    partitions = int(command[command.index("--partitions") + 1])
    worker = _parse(_command(services["worker-1"]))
    assert topic == f"{worker.topic_prefix}.events" and partitions % len(WORKERS) == 0


def test_two_workers_in_one_group_each_with_its_id_and_metrics(services):
    parsed = {name: _parse(_command(services[name])) for name in WORKERS}
    for name, args in parsed.items():
        assert args.command == "worker" and args.bootstrap == "kafka:9092"
        assert args.worker_id == name and args.metrics_port is not None and args.log_format == "json"
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert f"localhost:{args.metrics_port}/metrics" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["environment"]["STREAM_CD_STATE_KEY"].startswith("${STREAM_CD_STATE_KEY:?")
    groups = {args.group or f"{args.topic_prefix}.workers" for args in parsed.values()}
    assert len(groups) == 1
    assert len({args.worker_id for args in parsed.values()}) == len(WORKERS)


def test_the_decisions_subscriber_parses(services):
    args = _parse(_command(services["decisions"]))
    assert args.command == "decisions" and args.bootstrap == "kafka:9092" and args.follow is True


def test_prometheus_scrapes_exactly_the_workers_metrics_ports(services):
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    wanted = {f"{name}:{_parse(_command(services[name])).metrics_port}" for name in WORKERS}
    assert targets == wanted
    mounted = services["prometheus"]["volumes"][0].split(":")
    assert (DOCKER / mounted[0]).resolve() == (DOCKER / "prometheus" / "prometheus.yml").resolve()


def test_every_service_that_can_says_whether_it_is_healthy(services):
    for name in ("kafka", *WORKERS, "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service.get("image", "")
        if service.get("build") or image == "stream-cd:latest":
            continue  # built here from the repository
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), (name, image)


def _exprs(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_grafana_dashboard_queries_only_series_the_worker_exposes():
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "stream-cd.json").read_text())
    exposed = set()
    for name, (kind, _, _) in SERIES.items():
        exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    used = {name for expr in _exprs(dashboard) for name in re.findall(r"\bstream_cd_\w+", expr)}
    assert used and used <= exposed, used - exposed
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in ("lag", "events consumed per second", "latency", "rolling metric per arm", "decisions"):
        assert wanted in titles
    source = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {uid}
    provider = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "dashboards" / "stream-cd.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dockerfile_builds_a_pinned_image_without_dev_tools():
    text = (DOCKER / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2 and len(set(bases)) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0])
    final = text.split("\nFROM ")[-1]
    assert "COPY --from=build /opt/stream-cd /opt/stream-cd" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install|\[test|\[bench", final)
    assert re.search(r"pip uninstall -y pip", text)
    assert re.search(r'^ENTRYPOINT \["stream-cd"\]', text, re.M)


def test_the_stack_comes_up_and_learns(tmp_path):
    """The whole stack: up, a stream replayed into it, decisions and metrics seen, down."""
    from tests.conftest import _docker_engine_answers

    if not _docker_engine_answers():
        pytest.skip("no Docker engine answers a ping on this machine: the compose stack cannot be brought up here")
    import os
    import subprocess
    import time
    import urllib.request

    import orjson

    from consumers.subscribe import subscribe_decisions
    from producers.replay import replay_to_kafka
    from stream_cd.simulate.datasets import generate

    compose = ["docker", "compose", "-f", str(DOCKER / "compose.yaml")]
    env = {**os.environ, "STREAM_CD_STATE_KEY": "compose-test-key-0123456789abcdef"}
    subprocess.run([*compose, "up", "-d", "--build", "--wait"], check=True, env=env, timeout=900)
    try:
        events = [orjson.dumps(e) for e in generate("agrawal", 20_000, seed=3)]
        assert replay_to_kafka(events, "localhost:29092", "stream-cd.events") == 20_000
        deadline = time.monotonic() + 180
        consumed = 0.0
        while time.monotonic() < deadline and consumed < 20_000:
            consumed = 0.0
            for port in (9108, 9109):
                text = urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5).read().decode()
                consumed += float(re.search(r"^stream_cd_messages_consumed_total (\S+)", text, re.M).group(1))
            time.sleep(2)
        assert consumed >= 20_000
        decisions = list(subscribe_decisions("localhost:29092", "stream-cd.decisions", from_beginning=True))
        assert any(d["action"] == "checkpoint" for d in decisions)
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, timeout=300)
