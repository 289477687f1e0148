"""Shared pytest fixtures.

Kafka
-----
``kafka_bootstrap`` (session) is the bootstrap address of a real Apache Kafka
broker, found in this order:

1. ``STREAM_CD_KAFKA_BOOTSTRAP`` when set (``make test`` starts one and sets it);
2. a testcontainers ``apache/kafka`` container, where a Docker engine answers a ping;
3. the local broker of ``stream-cd kafka up`` (Maven jars, Java 17), started in a
   temporary directory on a free port and stopped at the end of the session.

When none can be had the tests that use it are skipped with the reason, or fail
when ``STREAM_CD_REQUIRE_KAFKA=1``. ``topic_prefix`` gives each test its own
topic names so tests never see each other's messages.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

KAFKA_IMAGE = "apache/kafka:4.3.1"  # the version of stream_cd/broker/pom.xml
READY_TIMEOUT_S = 90.0


def _unavailable(reason: str) -> None:
    """Skip, or fail when STREAM_CD_REQUIRE_KAFKA=1 says a broker is required."""
    if os.environ.get("STREAM_CD_REQUIRE_KAFKA") == "1":
        pytest.fail(f"STREAM_CD_REQUIRE_KAFKA=1 but no Kafka broker: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no SDK, no socket, no engine: all mean "no"
        return False


def _wait_ready(bootstrap: str, cluster_id: str) -> bool:
    import time

    from consumers.admin import broker_cluster_id

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if broker_cluster_id(bootstrap, 2.0) == cluster_id:
            return True
        time.sleep(0.5)
    return False


def _container_broker() -> tuple[str, Callable[[], None]]:
    """An apache/kafka container in KRaft mode, its port published on a free host port."""
    from testcontainers.core.container import DockerContainer

    from stream_cd.broker.config import free_port, new_cluster_id

    port, cluster_id = free_port(), new_cluster_id()
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
    host = "127.0.0.1"
    env = {
        "CLUSTER_ID": cluster_id,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    for key, value in env.items():
        container = container.with_env(key, value)
    container.start()
    bootstrap = f"{host}:{port}"
    if not _wait_ready(bootstrap, cluster_id):
        container.stop()
        raise RuntimeError(f"the {KAFKA_IMAGE} container did not answer at {bootstrap} in {READY_TIMEOUT_S:.0f} s")
    return bootstrap, container.stop


def _local_broker(directory: os.PathLike[str]) -> tuple[str, Callable[[], None]]:
    """The broker of ``stream-cd kafka up``, in ``directory`` on a free port."""
    from consumers.admin import broker_cluster_id
    from stream_cd.broker import LocalBroker
    from stream_cd.broker.config import free_port

    broker = LocalBroker(directory)
    bootstrap = broker.start(broker_cluster_id, port=free_port(), timeout_s=READY_TIMEOUT_S)
    return bootstrap, lambda: broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address ``host:port`` of a real Apache Kafka broker (see the module docstring)."""
    given = os.environ.get("STREAM_CD_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    try:
        if _docker_engine_answers():
            bootstrap, stop = _container_broker()
        else:
            bootstrap, stop = _local_broker(tmp_path_factory.mktemp("kafka"))
    except Exception as err:  # noqa: BLE001 - whatever went wrong is the skip reason
        _unavailable(f"{type(err).__name__}: {err}")
    try:
        yield bootstrap
    finally:
        stop()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic-name prefix unique to this test, e.g. ``test.round_trip.1a2b3c4d.``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:60]
    return f"test.{name}.{uuid.uuid4().hex[:8]}."
