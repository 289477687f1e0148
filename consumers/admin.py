"""Kafka admin helpers (kafka-python): is a broker there, and make sure topics exist.

``broker_cluster_id`` is the readiness probe ``stream-cd kafka up`` injects into
:class:`stream_cd.broker.LocalBroker`; ``ensure_topics`` creates topics
idempotently and, where asked, checks that an existing topic has the partitions
and configuration the caller needs.

>>> TopicSpec("stream-cd.checkpoints", partitions=4, config={"cleanup.policy": "compact"}).partitions
4
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream_cd.errors import ConfigError, TransportError

__all__ = ["TopicSpec", "broker_cluster_id", "admin_client", "ensure_topics", "partition_count", "topic_config"]


@dataclass(frozen=True)
class TopicSpec:
    """A topic someone needs: its name, partition count and topic-level config.

    ``check=True`` makes :func:`ensure_topics` verify an already existing topic
    (same partition count, and every key of ``config`` set to the same value)
    instead of accepting it as it is. ``grow=True`` asks for at least ``partitions``
    instead: an existing topic with fewer gets partitions added. The keys of
    ``at_least`` are checked as lower bounds (an existing topic that takes larger
    messages is fine), and those of ``unchecked`` only set when the topic is created.
    """

    name: str
    partitions: int = 1
    config: dict[str, str] = field(default_factory=dict)
    check: bool = False
    grow: bool = False
    at_least: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a topic name must not be empty")
        if self.partitions < 1:
            raise ConfigError(f"topic {self.name!r}: partitions must be at least 1, not {self.partitions}")


@contextmanager
def _quiet(logger: str = "kafka") -> Iterator[None]:
    """Silence kafka-python's connection-refused chatter while probing."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)


def broker_cluster_id(bootstrap: str, timeout_s: float = 2.0, client_options: dict | None = None) -> str | None:
    """Return the cluster id of the broker answering metadata at ``bootstrap``; None if none does.

    Never raises: any failure (nothing listening, timeout, not Kafka, a refused login) gives None.
    ``client_options`` (kafka-python settings, see :mod:`consumers.client_config`) secure the connection.

    >>> broker_cluster_id("127.0.0.1:1", timeout_s=0.3) is None
    True
    """
    timeout_ms = max(100, int(timeout_s * 1000))
    with _quiet():
        client = None
        try:
            client = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="stream-cd-probe",
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                reconnect_backoff_ms=50,
                reconnect_backoff_max_ms=200,
                **(client_options or {}),
            )
            cluster_id = client.describe_cluster().get("cluster_id")
            return str(cluster_id) if cluster_id else None
        except Exception:  # noqa: BLE001 - a probe answers "no" rather than raising
            return None
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass


@contextmanager
def admin_client(bootstrap: str, timeout_s: float = 30.0, client_options: dict | None = None) -> Iterator[KafkaAdminClient]:
    """A connected ``KafkaAdminClient``, closed on exit; :class:`TransportError` if unreachable."""
    timeout_ms = int(timeout_s * 1000)
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="stream-cd-admin",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **(client_options or {}),
        )
    except KafkaError as err:
        raise TransportError(f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s ({err}); "
                             f"start one with `stream-cd kafka up`") from err
    try:
        yield client
    finally:
        client.close()


def _topic_configs(client: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str | None]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described = client.describe_configs(resources, config_filter="all").get("topic", {})
    return {name: {key: entry.get("value") for key, entry in described.get(name, {}).items()} for name in names}


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 30.0,
                  client_options: dict | None = None) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; return the names created.

    Existing topics are left alone, except that those with ``check=True`` must
    match their spec (partition count and each listed config value), else
    :class:`~stream_cd.errors.ConfigError` names the difference. Safe to call
    concurrently: a topic created by someone else meanwhile counts as existing.
    """
    specs = list(specs)
    if not specs:
        return []
    with admin_client(bootstrap, timeout_s, client_options) as client:
        try:
            existing = set(client.list_topics())
            missing = [s for s in specs if s.name not in existing]
            created: list[str] = []
            if missing:
                request = {s.name: {"num_partitions": s.partitions, "replication_factor": -1,
                                    "configs": {k: str(v) for k, v in s.config.items()}}
                           for s in missing}
                result = client.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
                for topic in result["topics"]:
                    code = topic.get("error_code", 0)
                    if code == 0:
                        created.append(topic["name"])
                    elif code != TopicAlreadyExistsError.errno:
                        raise TransportError(
                            f"could not create topic {topic['name']!r}: error {code} {topic.get('error_message') or ''}".rstrip()
                        )
                client.wait_for_topics([s.name for s in missing], timeout_ms=int(timeout_s * 1000))
            to_check = [s for s in specs if s.check and s.name not in created]
            if to_check:
                _check(client, to_check)
            return created
        except KafkaError as err:
            raise TransportError(f"topic set-up on {bootstrap} failed: {err}") from err


def _check(client: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    described = {t["name"]: t for t in client.describe_topics([s.name for s in specs])}
    configs = _topic_configs(client, [s.name for s in specs])
    for spec in specs:
        partitions = len(described.get(spec.name, {}).get("partitions") or [])
        if spec.grow and partitions < spec.partitions:
            client.create_partitions({spec.name: spec.partitions})
            logging.getLogger(__name__).warning("topic %r had %d partitions; it now has %d", spec.name, partitions,
                                                spec.partitions)
        elif not spec.grow and partitions != spec.partitions:
            raise ConfigError(
                f"topic {spec.name!r} exists with {partitions} partitions, not the {spec.partitions} needed; "
                f"delete it or use another topic prefix"
            )
        for key, want in spec.config.items():
            have = configs[spec.name].get(key)
            if key in spec.unchecked:
                continue
            if key in spec.at_least and have is not None and have.isdigit() and int(have) >= int(want):
                continue
            if have != str(want):
                raise ConfigError(
                    f"topic {spec.name!r} exists with {key}={have}, not {key}={want}; "
                    f"alter it (kafka-configs --alter) or use another topic prefix"
                )


def topic_config(bootstrap: str, topic: str, name: str, timeout_s: float = 30.0,
                 client_options: dict | None = None) -> str | None:
    """The value of the setting ``name`` (such as ``max.message.bytes``) of ``topic``, as the
    broker applies it (the broker's default when the topic sets none)."""
    with admin_client(bootstrap, timeout_s, client_options) as client:
        try:
            return _topic_configs(client, [topic])[topic].get(name)
        except KafkaError as err:
            raise TransportError(f"describing topic {topic!r} on {bootstrap} failed: {err}") from err


def partition_count(bootstrap: str, topic: str, timeout_s: float = 30.0, client_options: dict | None = None) -> int | None:
    """How many partitions ``topic`` has; None when it does not exist."""
    with admin_client(bootstrap, timeout_s, client_options) as client:
        try:
            if topic not in set(client.list_topics()):
                return None
            described = client.describe_topics([topic])
        except KafkaError as err:
            raise TransportError(f"describing topic {topic!r} on {bootstrap} failed: {err}") from err
    return len(described[0].get("partitions") or []) or None
