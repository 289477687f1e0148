"""Client properties files (``--kafka-config``) read into kafka-python options, and refused clearly."""

from __future__ import annotations

import argparse

import pytest

from consumers.client_config import KNOWN_KEYS, load_client_config, parse_client_config
from consumers.preflight import explain
from stream_cd.cli import main
from stream_cd.errors import ConfigError


@pytest.fixture
def ca(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_librdkafka_names_map_to_kafka_python_options(ca, tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("c")
    key.write_text("k")
    config = parse_client_config(f"""
        # as a managed Kafka hands it out
        bootstrap.servers=broker-1.example.com:9093
        security.protocol=sasl_ssl
        sasl.mechanisms=scram-sha-256
        sasl.username=app
        sasl.password=pw
        ssl.ca.location={ca}
        ssl.certificate.location={cert}
        ssl.key.location={key}
        ssl.key.password=kp
        ssl.endpoint.identification.algorithm=https
    """)
    assert config.bootstrap == "broker-1.example.com:9093"
    assert config.options == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "app",
        "sasl_plain_password": "pw", "ssl_cafile": str(ca), "ssl_certfile": str(cert), "ssl_keyfile": str(key),
        "ssl_password": "kp", "ssl_check_hostname": True,
    }


def test_a_java_jaas_line_gives_the_user_and_password_and_colons_and_continuations_are_read(ca):
    config = parse_client_config(
        "security.protocol: SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n"
        '    username="svc" password="p;w=1";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={ca}\n"
    )
    assert config.username == "svc"
    assert config.options["sasl_plain_password"] == "p;w=1"
    assert config.options["ssl_cafile"] == str(ca)


def test_secrets_come_from_the_environment_and_never_show_in_the_repr():
    config = parse_client_config("security.protocol=SASL_PLAINTEXT\nsasl.username=${USER_}\nsasl.password=${PW}",
                                 env={"USER_": "u", "PW": "very-secret"})
    assert config.options["sasl_plain_password"] == "very-secret"
    assert "very-secret" not in repr(config)


@pytest.mark.parametrize("text, message", [
    ("max.poll.records=5", "unknown key 'max.poll.records'; known keys: acks"),
    ("security.protocol=TLS", "security.protocol must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, not 'TLS'"),
    ("security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\nsasl.username=u\nsasl.password=p", "sasl.mechanism must be one of"),
    ("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN", "needs sasl.username and sasl.password"),
    ("sasl.username=u\nsasl.password=p", "SASL settings need security.protocol=SASL_SSL or SASL_PLAINTEXT"),
    ("security.protocol=SSL\nssl.ca.location=/no/such/ca.pem", "the file '/no/such/ca.pem' (ssl.ca.location) does not exist"),
    ("ssl.truststore.location=/t.jks\nssl.truststore.password=x", "ssl.truststore.type=JKS cannot be read here, only PEM"),
    ("security.protocol=SASL_SSL\nsasl.username=u\nsasl.password=p\n"
     "sasl.jaas.config=x.PlainLoginModule required username='a' password='b';", "either sasl.jaas.config or"),
    ("sasl.password=${UNSET_FOR_THE_TEST}", "names the environment variable UNSET_FOR_THE_TEST, which is not set"),
    ("just a line", "line 1: expected key=value"),
])
def test_a_bad_file_is_refused_naming_what_to_change(text, message):
    with pytest.raises(ConfigError, match="^f.*" + message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        parse_client_config(text, source="f", env={})


def test_every_known_key_is_accepted_alone_or_with_what_it_needs(ca):
    needs = {"security.protocol": "SSL", "ssl.ca.location": str(ca), "ssl.truststore.type": "PEM",
             "ssl.truststore.location": str(ca), "ssl.keystore.type": "PEM", "ssl.keystore.location": str(ca),
             "ssl.certificate.location": str(ca), "ssl.key.location": str(ca), "ssl.crl.location": str(ca),
             "ssl.endpoint.identification.algorithm": "none"}
    sasl = {"security.protocol": "SASL_SSL", "sasl.username": "u", "sasl.password": "p"}
    for key in KNOWN_KEYS:
        base = sasl if key.startswith("sasl.") else {"security.protocol": "SSL"}
        if key == "sasl.jaas.config":
            base = {"security.protocol": "SASL_SSL"}
        pairs = {**base, key: needs.get(key, "x")}
        if key.startswith("sasl.mechanism"):
            pairs[key] = "PLAIN"
        if key == "sasl.jaas.config":
            pairs[key] = 'a.PlainLoginModule required username="u" password="p";'
        if key.endswith("store.location"):
            pairs[key.replace("location", "type")] = "PEM"
        parse_client_config("\n".join(f"{k}={v}" for k, v in pairs.items()), source="f")


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the Kafka client config '.*missing.properties'"):
        load_client_config(tmp_path / "missing.properties")


def test_the_cli_refuses_a_bad_config_before_it_connects(tmp_path, capsys):
    bad = tmp_path / "bad.properties"
    bad.write_text("sasl.passwd=x\n")
    assert main(["decisions", "--bootstrap", "127.0.0.1:1", "--kafka-config", str(bad)]) == 2
    assert f"stream-cd decisions: error: {bad}: unknown key 'sasl.passwd'" in capsys.readouterr().err


def test_kafka_config_without_a_broker_is_refused(tmp_path, capsys):
    events = tmp_path / "e.jsonl"
    events.write_text('{"x": {"a": 1.0}, "y": true}\n')
    assert main(["replay", str(events), "--kafka-config", str(tmp_path / "c.properties")]) == 2
    assert "needs --bootstrap" in capsys.readouterr().err


def test_no_command_takes_a_password_on_the_command_line():
    from stream_cd.cli import build_parser

    def flags(parser):
        for action in parser._actions:
            yield from action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from flags(sub)

    every = list(flags(build_parser()))
    assert "--kafka-config" in every and "--token-file" in every
    assert not [f for f in every if "pass" in f or "secret" in f]


@pytest.mark.parametrize("messages, start", [
    (["connected", "Broker version identified as 4.3", "Authenticated as u via SASL / SCRAM-SHA-512", "Connected",
      "Closing transport", "socket disconnected"], None),
    (["Broker version identified as 4.3", "Abort ([Error 58] SaslAuthenticationFailedError: SaslAuthenticationFailedError: "
      "Authentication failed due to invalid credentials with SASL mechanism SCRAM-SHA-512)"],
     "authentication failed for user u at b:1: Authentication failed due to invalid credentials"),
    (["Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch"],
     "the TLS handshake with b:1 failed"),
])
def test_the_connection_log_is_read_for_the_cause(messages, start):
    verdict = explain(messages, "b:1", "SASL_SSL", "u", "f")
    assert verdict == start if start is None else verdict.startswith(start)
    if messages[-1].endswith("mismatch"):
        assert "ssl.endpoint.identification.algorithm in f" in verdict
