"""Kafka client properties files (``--kafka-config FILE``) as kafka-python client options.

The file is what managed Kafka services hand out: Java-style ``key=value``
lines, ``#`` or ``!`` comments, with the librdkafka names (Confluent Cloud,
Aiven, MSK) or the Java ones. Any value may name environment variables as
``${VAR}``, so secrets need be neither in the file nor on the command line.

    bootstrap.servers=broker.example.com:9093
    security.protocol=SASL_SSL
    sasl.mechanism=SCRAM-SHA-512
    sasl.username=app
    sasl.password=${KAFKA_PASSWORD}
    ssl.ca.location=/etc/kafka/ca.pem

>>> config = parse_client_config('''
... security.protocol=SASL_SSL
... sasl.mechanisms=PLAIN
... sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username='key' password='${SECRET}';
... ''', source="cloud.properties", env={"SECRET": "s3cr3t"})
>>> sorted(config.options)
['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
>>> config.options["sasl_plain_password"], config.username
('s3cr3t', 'key')
>>> config
ClientConfig(source='cloud.properties', bootstrap=None, username='key', options=<4 settings>)
>>> parse_client_config("linger.ms=5", source="f")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
stream_cd.errors.ConfigError: f: unknown key 'linger.ms'; known keys: acks, bootstrap.servers, ...
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_cd.errors import ConfigError

__all__ = ["ClientConfig", "parse_client_config", "load_client_config", "KNOWN_KEYS", "CONFIG_ENV"]

log = logging.getLogger(__name__)

CONFIG_ENV = "STREAM_CD_KAFKA_CONFIG"
"""Names the client properties file when ``--kafka-config`` is not given."""

# file key -> kafka-python option; several spellings of one setting map to the same option
_OPTIONS = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "ssl.crl.location": "ssl_crlfile",
    "ssl.cipher.suites": "ssl_ciphers",
}
# read specially: the JAAS line, hostname checking, PEM trust and key stores
_SPECIAL = ("bootstrap.servers", "sasl.jaas.config", "ssl.endpoint.identification.algorithm",
            "ssl.truststore.location", "ssl.truststore.type", "ssl.truststore.password",
            "ssl.keystore.location", "ssl.keystore.type", "ssl.keystore.password")
# per-client tuning that stream-cd sets for each of its clients itself
_IGNORED = ("client.id", "client.dns.lookup", "session.timeout.ms", "acks")
KNOWN_KEYS = tuple(sorted({*_OPTIONS, *_SPECIAL, *_IGNORED}))

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_JAAS = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s;]+))""")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ClientConfig:
    """kafka-python client options read from ``source``; its repr never shows a secret.

    ``bootstrap`` is the file's ``bootstrap.servers`` (None when absent); ``username``
    the SASL user, for error messages.
    """

    source: str
    options: dict[str, Any] = field(default_factory=dict)
    bootstrap: str | None = None
    username: str | None = None

    def __repr__(self) -> str:
        return (f"ClientConfig(source={self.source!r}, bootstrap={self.bootstrap!r}, "
                f"username={self.username!r}, options=<{len(self.options)} settings>)")


def _lines(text: str) -> list[tuple[int, str]]:
    """The logical lines of a properties file (number, text), continuations joined."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip() if not pending else raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        if not pending:
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1]
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _expand(value: str, key: str, source: str, env: Mapping[str, str]) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"{source}: {key} names the environment variable {name}, which is not set; "
                              f"export {name} or write the value into the file")
        return env[name]

    return _VAR.sub(variable, value)


def _pairs(text: str, source: str, env: Mapping[str, str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for number, line in _lines(text):
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if not match:
            raise ConfigError(f"{source}, line {number}: expected key=value, not {line.split()[0]!r}...")
        key, value = match.group(1), match.group(2).strip()
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(KNOWN_KEYS)}")
        pairs[key] = _expand(value, key, source, env)
    return pairs


def _jaas_login(jaas: str, source: str) -> tuple[str, str]:
    """The username and password of a PlainLoginModule or ScramLoginModule JAAS line."""
    if not re.search(r"(PlainLoginModule|ScramLoginModule)\s+required", jaas):
        raise ConfigError(f"{source}: sasl.jaas.config must use PlainLoginModule or ScramLoginModule "
                          f"(with username and password); give sasl.username and sasl.password instead")
    found = {m.group(1): next(g for g in m.groups()[1:] if g is not None) for m in _JAAS.finditer(jaas)}
    if "username" not in found or "password" not in found:
        raise ConfigError(f"{source}: sasl.jaas.config needs username=\"...\" and password=\"...\"")
    return found["username"], found["password"]


def _store(pairs: dict[str, str], kind: str, source: str) -> str | None:
    """The file of a PEM trust or key store; other store types cannot be read by kafka-python."""
    location = pairs.get(f"ssl.{kind}.location")
    if location is None:
        return None
    store = pairs.get(f"ssl.{kind}.type", "JKS").upper()
    if store != "PEM":
        hint = ("keytool -exportcert -rfc -keystore FILE > ca.pem, then ssl.ca.location=ca.pem"
                if kind == "truststore" else "openssl pkcs12 -in FILE -nodes, then ssl.certificate.location and ssl.key.location")
        raise ConfigError(f"{source}: ssl.{kind}.type={store} cannot be read here, only PEM files; convert it "
                          f"({hint})")
    return location


def _options(pairs: dict[str, str], source: str) -> tuple[dict[str, Any], str | None]:
    options: dict[str, Any] = {}
    for key, value in pairs.items():
        if key in _OPTIONS:
            options[_OPTIONS[key]] = value
        elif key in _IGNORED:
            log.info("%s: %s is set by stream-cd for each client; the file's value is not used", source, key)
    if "sasl.jaas.config" in pairs:
        if "sasl.username" in pairs or "sasl.password" in pairs:
            raise ConfigError(f"{source}: give either sasl.jaas.config or sasl.username/sasl.password, not both")
        options["sasl_plain_username"], options["sasl_plain_password"] = _jaas_login(pairs["sasl.jaas.config"], source)
    for kind, option in (("truststore", "ssl_cafile"), ("keystore", "ssl_certfile")):
        location = _store(pairs, kind, source)
        if location is not None:
            options[option] = location
    if pairs.get("ssl.keystore.password") and "ssl_password" not in options:
        options["ssl_password"] = pairs["ssl.keystore.password"]
    if "ssl.endpoint.identification.algorithm" in pairs:
        algorithm = pairs["ssl.endpoint.identification.algorithm"].lower()
        if algorithm not in ("https", "", "none"):
            raise ConfigError(f"{source}: ssl.endpoint.identification.algorithm must be https, none or empty, "
                              f"not {algorithm!r}")
        options["ssl_check_hostname"] = algorithm == "https"
    return options, pairs.get("bootstrap.servers") or None


def _check(options: dict[str, Any], source: str) -> None:
    protocol = options.setdefault("security_protocol", "PLAINTEXT").upper()
    options["security_protocol"] = protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{source}: security.protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    mechanism = options.get("sasl_mechanism")
    if protocol.startswith("SASL"):
        mechanism = options["sasl_mechanism"] = (mechanism or "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise ConfigError(f"{source}: sasl.mechanism must be one of {', '.join(MECHANISMS)}, not {mechanism!r}")
        if not options.get("sasl_plain_username") or "sasl_plain_password" not in options:
            raise ConfigError(f"{source}: security.protocol={protocol} needs sasl.username and sasl.password "
                              f"(or sasl.jaas.config)")
    elif mechanism or "sasl_plain_username" in options:
        raise ConfigError(f"{source}: SASL settings need security.protocol=SASL_SSL or SASL_PLAINTEXT, not {protocol}")
    for option, key in (("ssl_cafile", "ssl.ca.location"), ("ssl_certfile", "ssl.certificate.location"),
                        ("ssl_keyfile", "ssl.key.location"), ("ssl_crlfile", "ssl.crl.location")):
        if option in options and not Path(options[option]).is_file():
            raise ConfigError(f"{source}: the file {options[option]!r} ({key}) does not exist")


def parse_client_config(text: str, source: str = "<client config>", env: Mapping[str, str] | None = None) -> ClientConfig:
    """Read a client properties text; :class:`~stream_cd.errors.ConfigError` names a bad key or value.

    >>> parse_client_config("# nothing secured\\nsecurity.protocol=PLAINTEXT").options
    {'security_protocol': 'PLAINTEXT'}
    >>> parse_client_config("ssl.endpoint.identification.algorithm=\\nsecurity.protocol=SSL").options
    {'security_protocol': 'SSL', 'ssl_check_hostname': False}
    >>> parse_client_config("sasl.password=${NOPE}", source="f", env={})
    Traceback (most recent call last):
    ...
    stream_cd.errors.ConfigError: f: sasl.password names the environment variable NOPE, which is not set; export NOPE or write the value into the file
    """
    pairs = _pairs(text, source, os.environ if env is None else env)
    options, bootstrap = _options(pairs, source)
    _check(options, source)
    return ClientConfig(source, options, bootstrap, options.get("sasl_plain_username"))


def load_client_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ClientConfig:
    """Read the client properties file ``path``."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the Kafka client config {str(path)!r}: {err.strerror or err}") from err
    return parse_client_config(text, str(path), env)
