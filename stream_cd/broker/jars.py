"""The Apache Kafka jars: found in the user cache, or fetched once with Maven.

The broker is assembled from Maven Central with the ``pom.xml`` shipped next to
this module (``org.apache.kafka:kafka_2.13`` plus a log4j2 backend). The jars
land in ``$XDG_CACHE_HOME/stream-cd/kafka-<version>/lib`` (``~/.cache`` when the
variable is unset); a ``.complete`` marker is written only after Maven
succeeded, so an interrupted download is retried on the next start.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from stream_cd.errors import BrokerError

__all__ = [
    "kafka_version",
    "cache_dir",
    "ensure_jars",
    "find_java",
    "java_major_version",
    "package_file",
]

MIN_JAVA = 17
MAVEN_TIMEOUT_S = 900.0
_MARKER = ".complete"


def package_file(name: str) -> Path:
    """Return the path of a file shipped in this package (``pom.xml``, ``log4j2.properties``).

    >>> package_file("pom.xml").name
    'pom.xml'
    """
    return Path(str(resources.files("stream_cd.broker").joinpath(name)))


def kafka_version(pom: Path | None = None) -> str:
    """Return the Kafka version the packaged pom asks for.

    >>> import re
    >>> bool(re.fullmatch(r"\\d+\\.\\d+\\.\\d+", kafka_version()))
    True
    """
    text = (pom or package_file("pom.xml")).read_text()
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", text)
    if not match:
        raise BrokerError(f"no <kafka.version> property in {pom or package_file('pom.xml')}")
    return match.group(1)


def cache_dir(version: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Return the directory the jars of one Kafka version are cached in.

    >>> cache_dir("4.3.1", env={"XDG_CACHE_HOME": "/c"}).as_posix()
    '/c/stream-cd/kafka-4.3.1'
    """
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stream-cd" / f"kafka-{version or kafka_version()}"


def _require(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"`{tool}` was not found on PATH; install {what} (the local Kafka broker needs it)")
    return path


def find_java() -> str:
    """Return the java executable: ``$JAVA_HOME/bin/java`` when set, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return _require("java", f"a Java {MIN_JAVA} (or newer) runtime, e.g. `apt-get install openjdk-17-jre-headless`")


def java_major_version(version_output: str) -> int | None:
    """Parse the major version out of ``java -version`` output.

    >>> java_major_version('openjdk version "17.0.15" 2025-04-15')
    17
    >>> java_major_version('java version "1.8.0_392"')
    8
    >>> java_major_version("nonsense") is None
    True
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def check_java(java: str) -> None:
    """Raise :class:`BrokerError` unless ``java`` runs and is at least Java 17."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BrokerError(f"could not run `{java} -version`: {err}; install a Java {MIN_JAVA} runtime") from err
    major = java_major_version(out.stderr + out.stdout)
    if major is not None and major < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {major}; Apache Kafka {kafka_version()} needs Java {MIN_JAVA} or newer "
            f"(install e.g. openjdk-17-jre-headless, or point JAVA_HOME at one)"
        )


def ensure_jars(log=None) -> Path:
    """Return the directory holding the Kafka jars, fetching them with Maven when missing.

    ``log`` is an optional callable taking one progress message.
    """
    version = kafka_version()
    root = cache_dir(version)
    lib = root / "lib"
    if (root / _MARKER).is_file():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
        if (root / _MARKER).is_file():
            return lib
        mvn = _require("mvn", "Maven 3 (e.g. `apt-get install maven`); it fetches the Kafka jars from Maven Central once")
        if log:
            log(f"fetching Apache Kafka {version} jars from Maven Central into {lib} (once) ...")
        shutil.rmtree(lib, ignore_errors=True)
        pom = root / "pom.xml"
        shutil.copyfile(package_file("pom.xml"), pom)
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={lib}"]
        try:
            done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise BrokerError(f"Maven did not fetch the Kafka jars within {MAVEN_TIMEOUT_S:.0f} s: {' '.join(cmd)}") from err
        if done.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise BrokerError(
                f"Maven could not fetch the Kafka {version} jars (exit {done.returncode}); "
                f"is Maven Central reachable?\n$ {' '.join(cmd)}\n{tail}"
            )
        (root / _MARKER).write_text(version + "\n")
    return lib
