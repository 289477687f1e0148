"""A local single-node Apache Kafka broker for development and CI, run from Maven jars.

Pure process management: nothing in this package imports kafka-python; the
readiness probe is passed in (see :class:`~stream_cd.broker.manager.LocalBroker`).
"""

from stream_cd.broker.manager import DEFAULT_DIR, DEFAULT_PORT, BrokerStatus, LocalBroker, Probe

__all__ = ["LocalBroker", "BrokerStatus", "Probe", "DEFAULT_PORT", "DEFAULT_DIR"]
