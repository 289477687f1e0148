"""What a secured local broker (``stream-cd kafka up --secure``) adds to its directory.

The client listener speaks SASL_SSL with SCRAM-SHA-512; the controller listener
stays PLAINTEXT on 127.0.0.1. At the first secured start the broker directory
``D`` gains::

    D/secure/ca.pem            the certificate authority clients trust
    D/secure/ca.key            its private key (mode 0600)
    D/secure/broker.pem        the broker's private key and certificate (mode 0600),
                               for 127.0.0.1 and localhost, signed by the CA
    D/secure/user.json         the SCRAM user and its random password (mode 0600)
    D/client.properties        the client properties of that user (mode 0600),
                               for ``--kafka-config``

The certificates are made with ``openssl``. The SCRAM user is created when the
storage is formatted (``kafka.tools.StorageTool format --add-scram``).

>>> user = ScramUser.new()
>>> user.name, len(user.password)
('stream-cd', 43)
>>> print(client_properties(user, Path("/d/secure/ca.pem")), end="")  # doctest: +ELLIPSIS
# written by `stream-cd kafka up --secure`: the SCRAM user of this local broker
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username=stream-cd
sasl.password=...
ssl.ca.location=/d/secure/ca.pem
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stream_cd.errors import BrokerError

__all__ = ["ScramUser", "MECHANISM", "ensure_certificates", "client_properties", "secure_properties",
           "scram_format_argument", "write_private"]

MECHANISM = "SCRAM-SHA-512"
CERT_DAYS = 825
OPENSSL_TIMEOUT_S = 60.0


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (mode 0600), from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


@dataclass(frozen=True)
class ScramUser:
    """The SCRAM user clients of the secured broker log in as.

    >>> ScramUser("u", "p")
    ScramUser(name='u', password='***')
    """

    name: str
    password: str

    def __repr__(self) -> str:
        return f"ScramUser(name={self.name!r}, password='***')"

    @classmethod
    def new(cls, name: str = "stream-cd") -> "ScramUser":
        """A user with a random URL-safe password (32 random bytes)."""
        return cls(name, secrets.token_urlsafe(32))

    @classmethod
    def load_or_create(cls, path: Path) -> "ScramUser":
        """The user recorded in ``path``; a new one, recorded there, when it does not exist."""
        try:
            data = json.loads(path.read_text())
            return cls(str(data["name"]), str(data["password"]))
        except FileNotFoundError:
            user = cls.new()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_private(path, json.dumps({"name": user.name, "password": user.password}) + "\n")
            return user
        except (ValueError, KeyError, TypeError) as err:
            raise BrokerError(f"{path} is damaged ({err}); remove the broker directory {path.parent.parent} "
                              f"to start afresh") from err


def scram_format_argument(user: ScramUser) -> str:
    """The ``--add-scram`` value of ``kafka-storage format`` that creates ``user``.

    >>> scram_format_argument(ScramUser("u", "p-1"))
    'SCRAM-SHA-512=[name=u,password=p-1]'
    """
    return f"{MECHANISM}=[name={user.name},password={user.password}]"


def client_properties(user: ScramUser, ca_file: Path) -> str:
    """The client properties file of ``user`` (the password shown as ``...`` in the example above)."""
    lines = [
        "# written by `stream-cd kafka up --secure`: the SCRAM user of this local broker",
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={MECHANISM}",
        f"sasl.username={user.name}",
        f"sasl.password={user.password}",
        f"ssl.ca.location={ca_file}",
    ]
    return "\n".join(lines) + "\n"


def _jaas(user: ScramUser) -> str:
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user.name}" password="{user.password}";'


def secure_properties(port: int, controller_port: int, host: str, user: ScramUser, broker_pem: Path, ca_file: Path) -> dict[str, str]:
    """The ``server.properties`` entries of a SASL_SSL client listener (the broker talks to
    itself on it as ``user``), replacing the PLAINTEXT ones.

    >>> p = secure_properties(9092, 9093, "127.0.0.1", ScramUser("u", "p"), Path("/b.pem"), Path("/ca.pem"))
    >>> p["listeners"]
    'SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093'
    >>> p["ssl.keystore.type"], p["sasl.enabled.mechanisms"]
    ('PEM', 'SCRAM-SHA-512')
    """
    return {
        "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _jaas(user),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",
    }


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise BrokerError("`openssl` was not found on PATH; install it (e.g. `apt-get install openssl`): "
                          "`kafka up --secure` makes the broker's certificates with it")
    try:
        done = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise BrokerError(f"openssl did not finish within {OPENSSL_TIMEOUT_S:.0f} s: openssl {' '.join(args)}") from err
    if done.returncode != 0:
        raise BrokerError(f"making the broker's certificates failed (exit {done.returncode}): "
                          f"openssl {' '.join(args)}\n{done.stderr.strip()}")


def ensure_certificates(directory: Path, host: str) -> tuple[Path, Path]:
    """Make a CA and a broker certificate for ``host`` and localhost in ``directory``, unless
    they are there; return ``(ca.pem, broker.pem)``. The broker's file holds its unencrypted
    PKCS#8 key and its certificate, as Kafka's PEM keystore reads them."""
    ca_pem, broker_pem = directory / "ca.pem", directory / "broker.pem"
    if ca_pem.is_file() and broker_pem.is_file():
        return ca_pem, broker_pem
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    days = str(CERT_DAYS)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", days, "-subj", "/CN=stream-cd local CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", f"/CN={host}", cwd=directory)
    (directory / "broker.ext").write_text(
        f"subjectAltName=IP:{host},DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "broker.crt", "-days", days, "-extfile", "broker.ext", cwd=directory)
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.p8", cwd=directory)
    write_private(broker_pem, (directory / "broker.p8").read_text() + (directory / "broker.crt").read_text())
    for name in ("broker.key", "broker.p8", "broker.csr", "broker.crt", "broker.ext", "ca.srl"):
        (directory / name).unlink(missing_ok=True)
    os.chmod(directory / "ca.key", 0o600)
    return ca_pem, broker_pem
