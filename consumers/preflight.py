"""Log in to a secured Kafka once before a command starts, and say clearly what is wrong.

kafka-python retries a refused login or an untrusted certificate until its
bootstrap timeout (30 s by default) and then reports only ``Unable to
bootstrap``; the cause is in its connection log. :func:`check_access` connects
once with the client options, reads that log while it does, and stops at the
first refusal with a :class:`~stream_cd.errors.TransportError` that names the
user, the broker and the setting of the config file to check:

>>> print(explain(["Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"],
...               "127.0.0.1:9093", "SASL_SSL", "app", "client.properties"))
the TLS handshake with 127.0.0.1:9093 failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed; check ssl.ca.location in client.properties (the CA that signed the broker's certificate)
>>> print(explain(["Broker version identified as 4.3", "Connection lost: socket disconnected"],
...               "b:9093", "SASL_SSL", "app", "f"))
authentication failed for user app at b:9093: the broker closed the connection at login; check sasl.username and sasl.password in f
>>> explain(["Connection refused"], "b:9093", "SASL_SSL", "app", "f") is None
True
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from stream_cd.errors import TransportError

__all__ = ["check_access", "explain", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 15.0
_TLS = ("CERTIFICATE_VERIFY_FAILED", "Handshake failed", "SSLError", "WRONG_VERSION_NUMBER")


def explain(messages: list[str], bootstrap: str, protocol: str, user: str | None, source: str) -> str | None:
    """What kafka-python's connection log ``messages`` show went wrong; None when it shows
    no refusal (a broker that is down or slow is the command's own business)."""
    text = "\n".join(messages)
    tls = next((m for m in messages if any(mark in m for mark in _TLS)), None)
    if tls is not None:
        detail = tls.split("Handshake failed: ")[-1]
        if "mismatch" in detail.lower():
            hint = (f"the broker's certificate is not for that address; check the bootstrap address, or "
                    f"ssl.endpoint.identification.algorithm in {source}")
        elif protocol in ("SSL", "SASL_SSL"):
            hint = f"check ssl.ca.location in {source} (the CA that signed the broker's certificate)"
        else:
            hint = f"the broker speaks TLS; set security.protocol=SSL or SASL_SSL in {source}"
        return f"the TLS handshake with {bootstrap} failed: {detail}; {hint}"
    if protocol.startswith("SASL") and ("SaslAuthenticationFailed" in text or _lost_at_login(messages)):
        reason = next((m.rsplit("SaslAuthenticationFailedError: ", 1)[-1].rstrip(")") for m in messages
                       if "SaslAuthenticationFailedError: " in m), "the broker closed the connection at login")
        return f"authentication failed for user {user} at {bootstrap}: {reason}; check sasl.username and sasl.password in {source}"
    if "UnsupportedSaslMechanism" in text:
        reason = next(m for m in messages if "UnsupportedSaslMechanism" in m)
        return f"{bootstrap} refused the SASL mechanism: {reason}; check sasl.mechanism in {source}"
    if not protocol.startswith("SASL") and "Broker version identified" not in text and "socket disconnected" in text:
        return (f"{bootstrap} closed the connection before answering; it may need TLS or SASL: "
                f"check security.protocol in {source}")
    return None


def _lost_at_login(messages: list[str]) -> bool:
    """True when a connection was lost after the broker answered (its version known) and
    before the SASL login succeeded: the broker's answer to a refused login.

    >>> _lost_at_login(["Broker version identified as 4.3", "Authenticated as u", "socket disconnected"])
    False
    """
    logging_in = False
    for message in messages:
        if "Broker version identified" in message:
            logging_in = True
        elif "Authenticated as" in message:
            logging_in = False
        elif logging_in and ("socket disconnected" in message or "Connection lost" in message):
            return True
    return False


class _Collector(logging.Handler):
    """Keeps kafka-python's connection messages and signals when they show a refusal."""

    def __init__(self, bootstrap: str, protocol: str, user: str | None, source: str) -> None:
        super().__init__(logging.INFO)
        self.context = (bootstrap, protocol, user, source)
        self.messages: list[str] = []
        self.verdict: str | None = None
        self.refused = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.verdict is None:
            verdict = explain(self.messages, *self.context)
            if verdict is not None:
                self.verdict = verdict
                self.refused.set()


def check_access(bootstrap: str, client_options: dict[str, Any], source: str,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Connect to ``bootstrap`` and log in; raise :class:`TransportError` at the first refusal
    (within about a second), or when nothing answered within ``timeout_s``."""
    from kafka import KafkaAdminClient

    protocol = str(client_options.get("security_protocol", "PLAINTEXT"))
    collector = _Collector(bootstrap, protocol, client_options.get("sasl_plain_username"), source)
    done = threading.Event()
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            client = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="stream-cd-preflight",
                                      bootstrap_timeout_ms=int(timeout_s * 1000), **client_options)
            client.close()
        except Exception as err:  # noqa: BLE001 - reported below, with what the log showed
            failure.append(err)
        finally:
            done.set()
            collector.refused.set()

    log = logging.getLogger("kafka")
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False  # the connection chatter is for the collector, not for stderr
    log.addHandler(collector)
    try:
        threading.Thread(target=connect, name="stream-cd-preflight", daemon=True).start()
        collector.refused.wait(timeout_s + 5.0)
    finally:
        log.removeHandler(collector)
        log.setLevel(level)
        log.propagate = propagate
    if collector.verdict is not None:
        raise TransportError(collector.verdict)
    if failure or not done.is_set():
        cause = failure[0] if failure else f"no answer within {timeout_s:.0f} s"
        last = collector.messages[-1] if collector.messages else ""
        raise TransportError(f"cannot connect to Kafka at {bootstrap} with {source}: {cause}"
                             + (f" (last: {last})" if last else ""))
