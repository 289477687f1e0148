"""Start, stop and inspect a local single-node Apache Kafka broker (KRaft mode).

Nothing here talks the Kafka protocol: whether the broker answers is asked of
a *probe*, a callable ``probe(bootstrap, timeout_s) -> cluster id | None``
injected by the caller (the CLI passes :func:`consumers.admin.broker_cluster_id`).
The broker counts as ready only when the probe returns the cluster id this
directory was formatted with, so another broker already listening on the port
is never mistaken for ours.

>>> broker = LocalBroker("/tmp/stream-cd-doctest-never-started")
>>> broker.status().running
False
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stream_cd.broker import jars
from stream_cd.broker.config import HOST, BrokerState, free_port, new_cluster_id, server_properties
from stream_cd.broker.security import (ScramUser, client_properties, ensure_certificates, scram_format_argument,
                                       secure_properties, write_private)
from stream_cd.broker.process import alive, command_line, log_tail, terminate
from stream_cd.errors import BrokerError

__all__ = ["LocalBroker", "BrokerStatus", "Probe", "DEFAULT_PORT", "DEFAULT_DIR"]

Probe = Callable[[str, float], "str | None"]
"""``probe(bootstrap, timeout_s)``: the cluster id of the broker answering there, or None."""

DEFAULT_PORT = 9092
DEFAULT_DIR = Path(".stream-cd") / "kafka"
JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true")
TAIL_LINES = 20


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BrokerStatus:
    """Whether the broker of a directory runs, with its pid and bootstrap address.

    >>> str(BrokerStatus(True, 42, "127.0.0.1:9092"))
    'running at 127.0.0.1:9092 (pid 42)'
    >>> str(BrokerStatus(False))
    'not running'
    """

    running: bool
    pid: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return f"running at {self.address} (pid {self.pid})" if self.running else "not running"


class LocalBroker:
    """The broker living in one directory; see :mod:`stream_cd.broker.config` for its files.

    Parameters
    ----------
    directory
        The broker directory; created on :meth:`start`.
    say
        Called with progress messages (default: print to stderr).
    """

    def __init__(self, directory: str | os.PathLike[str], say: Callable[[str], None] = _say) -> None:
        self.dir = Path(directory).absolute()
        self.say = say

    # -- files ---------------------------------------------------------------

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def state_file(self) -> Path:
        return self.dir / "broker.json"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def out_file(self) -> Path:
        return self.dir / "broker.out"

    @property
    def secure_dir(self) -> Path:
        return self.dir / "secure"

    @property
    def client_properties(self) -> Path:
        """The client properties (``--kafka-config``) of a secured broker's SCRAM user."""
        return self.dir / "client.properties"

    def secure(self) -> bool:
        """True when this directory's broker is (or will be, once formatted) a secured one."""
        state = BrokerState.load(self.state_file)
        return bool(state and state.secure)

    def formatted(self) -> bool:
        """True when the storage of this directory has been formatted."""
        return (self.data_dir / "meta.properties").is_file()

    # -- inspection ----------------------------------------------------------

    def _recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """True when ``pid`` is a live ``kafka.Kafka`` running this directory's properties."""
        if not alive(pid):
            return False
        argv = command_line(pid)
        return "kafka.Kafka" in argv and str(self.properties) in argv

    def port(self) -> int | None:
        """The client port in this directory's ``server.properties`` (None when absent)."""
        try:
            text = self.properties.read_text()
        except FileNotFoundError:
            return None
        match = re.search(r"^advertised\.listeners=[A-Z_]+://[^:]+:(\d+)", text, re.M)
        return int(match.group(1)) if match else None

    def status(self) -> BrokerStatus:
        """Whether a broker of ours runs in this directory, and where."""
        pid = self._recorded_pid()
        if pid is None or not self._is_ours(pid):
            return BrokerStatus(False)
        return BrokerStatus(True, pid, f"{HOST}:{self.port()}")

    # -- start ---------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def start(self, probe: Probe, port: int | None = None, timeout_s: float = 60.0, secure: bool = False) -> str:
        """Start the broker (or find it running) and return its bootstrap address.

        ``secure`` makes the client listener SASL_SSL (see :mod:`stream_cd.broker.security`);
        the probe then has to log in with :attr:`client_properties`. A directory stays
        what its first start made it, plain or secured.

        Raises :class:`BrokerError` when it cannot be prepared, exits early or is
        not ready within ``timeout_s`` seconds (then it is killed); the message
        carries the last lines of the broker's logs.
        """
        with self._locked():
            current = self.status()
            if current.running and secure != self.secure():
                raise BrokerError(self._kind_mismatch(secure))
            if current.running:
                if port is not None and current.address != f"{HOST}:{port}":
                    raise BrokerError(
                        f"a broker is already running in {self.dir} at {current.address} (pid {current.pid}), "
                        f"not on port {port}; stop it first with `stream-cd kafka down --dir {self.dir}`"
                    )
                self.say(f"broker already running in {self.dir} at {current.address} (pid {current.pid})")
                assert current.address is not None
                return current.address
            self.pid_file.unlink(missing_ok=True)  # stale, if any
            port = DEFAULT_PORT if port is None else port
            if not 0 < port < 65536:
                raise BrokerError(f"port {port} is not a TCP port (1-65535)")
            java = jars.find_java()
            jars.check_java(java)
            lib = jars.ensure_jars(self.say)
            state = self._prepare_state(port, secure)
            user = self._secure_files(port, state) if secure else None
            overrides = None if user is None else secure_properties(
                port, state.controller_port, HOST, user, self.secure_dir / "broker.pem", self.secure_dir / "ca.pem")
            write_private(self.properties, server_properties(port, state.controller_port, self.data_dir, overrides=overrides))
            if not self.formatted():
                self._format(java, lib, state, user)
            return self._launch(java, lib, state, port, probe, timeout_s)

    def _kind_mismatch(self, secure: bool) -> str:
        have, want = ("a secured", "plain") if self.secure() else ("a plain", "secured")
        again = "with --secure" if want == "plain" else "without --secure"
        return f"{self.dir} holds {have} broker; it cannot become a {want} one: start it {again}, or use another --dir"

    def _prepare_state(self, port: int, secure: bool = False) -> BrokerState:
        state = BrokerState.load(self.state_file)
        if state is not None and state.secure != secure:
            if self.formatted():
                raise BrokerError(self._kind_mismatch(secure))
            state = BrokerState(state.cluster_id, state.controller_port, secure)
            self.state_file.write_text(state.to_json())
        if state is None:
            if self.formatted():
                raise BrokerError(
                    f"{self.data_dir} holds Kafka data but {self.state_file} is missing; "
                    f"remove {self.dir} to start with an empty broker"
                )
            controller_port = free_port()
            while controller_port == port:
                controller_port = free_port()
            state = BrokerState(new_cluster_id(), controller_port, secure)
            self.state_file.write_text(state.to_json())
        if state.controller_port == port:
            raise BrokerError(
                f"port {port} is this broker's controller port (recorded in {self.state_file}); choose another --port"
            )
        return state

    def _java_command(self, java: str, lib: Path, main: str, *args: str) -> list[str]:
        return [
            java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={jars.package_file('log4j2.properties')}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{lib}{os.sep}*",
            main,
            *args,
        ]

    def _secure_files(self, port: int, state: BrokerState) -> ScramUser:
        """The certificates (made when missing), the SCRAM user and its client properties."""
        user = ScramUser.load_or_create(self.secure_dir / "user.json")
        ca_file, _ = ensure_certificates(self.secure_dir, HOST)
        write_private(self.client_properties, client_properties(user, ca_file))
        return user

    def _format(self, java: str, lib: Path, state: BrokerState, user: ScramUser | None = None) -> None:
        self.say(f"formatting broker storage in {self.data_dir} (cluster id {state.cluster_id})")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        scram = () if user is None else ("--add-scram", scram_format_argument(user))
        cmd = self._java_command(
            java, lib, "kafka.tools.StorageTool",
            "format", "--standalone", "-t", state.cluster_id, "-c", str(self.properties), *scram,
        )
        done = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not self.formatted():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-TAIL_LINES:])
            raise BrokerError(f"formatting the broker storage in {self.data_dir} failed (exit {done.returncode}):\n{tail}")

    def _launch(self, java: str, lib: Path, state: BrokerState, port: int, probe: Probe, timeout_s: float) -> str:
        address = f"{HOST}:{port}"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        server_log = self.logs_dir / "server.log"
        log_start = server_log.stat().st_size if server_log.exists() else 0
        cmd = self._java_command(java, lib, "kafka.Kafka", str(self.properties))
        with open(self.out_file, "wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self.say(f"starting Apache Kafka {jars.kafka_version()} at {address} (pid {proc.pid}, logs in {self.logs_dir})")

        def fail(reason: str) -> BrokerError:
            self.pid_file.unlink(missing_ok=True)
            return BrokerError(f"{reason}\n{self._log_report(server_log, log_start)}")

        began = time.monotonic()
        deadline = began + timeout_s
        next_note = began + 5.0
        foreign: str | None = None
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    hint = (f" (another Kafka broker, cluster id {foreign}, answers on {address})"
                            if foreign else "")
                    raise fail(f"the broker exited with status {code} before it was ready{hint}; "
                               f"is port {port} or {state.controller_port} already in use?")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    terminate(proc.pid, grace_s=5.0)
                    proc.poll()
                    raise fail(f"the broker did not answer at {address} within {timeout_s:.0f} s; it was stopped"
                               f"{self._recovery_hint(server_log, log_start)}")
                try:
                    cluster_id = probe(address, max(0.2, min(2.0, remaining)))
                except Exception:  # a probe should return None, but never let it break the wait
                    cluster_id = None
                if cluster_id == state.cluster_id:
                    self.say(f"broker ready at {address} after {time.monotonic() - began:.1f} s")
                    return address
                if cluster_id is not None:
                    foreign = cluster_id
                now = time.monotonic()
                if now >= next_note:
                    self.say(f"waiting for the broker at {address} ({now - began:.0f} s) ...")
                    next_note = now + 5.0
                time.sleep(0.2)
        except KeyboardInterrupt:
            terminate(proc.pid, grace_s=5.0)
            self.pid_file.unlink(missing_ok=True)
            raise

    def _recovery_hint(self, server_log: Path, start: int) -> str:
        """What to do when the deadline came while the broker was still loading its partitions'
        logs (after an unclean stop, each is recovered before the broker answers)."""
        if not any("LogLoader" in line for line in log_tail(server_log, TAIL_LINES, start)):
            return ""
        partitions = sum(1 for entry in self.data_dir.iterdir() if entry.is_dir()) if self.data_dir.is_dir() else 0
        return (f" while it was still loading the logs of its {partitions} partitions in {self.data_dir}: "
                "start it again with a longer --timeout, or remove that directory if its topics are not needed")

    def _log_report(self, server_log: Path, start: int) -> str:
        """The error lines and the last lines this start wrote to the broker's logs."""
        parts = []
        lines = log_tail(server_log, 100_000, start)
        errors = [line for line in lines if re.search(r"\b(ERROR|FATAL)\b|Exception|already in use", line)]
        # Stack frames crowd out what happened; keep the messages.
        tail = [line for line in lines if not re.match(r"\s+(at |\.\.\. \d+ more)", line)][-TAIL_LINES:]
        first_errors = [line for line in errors[:5] if line not in tail]
        if first_errors:
            parts.append(f"--- first errors in {server_log} ---")
            parts += first_errors
        if tail:
            parts.append(f"--- last {len(tail)} lines of {server_log} ---")
            parts += tail
        out = log_tail(self.out_file, TAIL_LINES)
        if out:
            parts.append(f"--- last {len(out)} lines of {self.out_file} ---")
            parts += out
        return "\n".join(parts) if parts else f"(the broker wrote no log lines; see {self.dir})"

    # -- stop ----------------------------------------------------------------

    def stop(self, grace_s: float = 30.0) -> int | None:
        """Stop the broker of this directory; return the pid stopped, None when none ran.

        SIGTERM first (Kafka shuts down cleanly), SIGKILL after ``grace_s`` seconds.
        Only the recorded pid is signalled, and only if it still is our broker.
        """
        with self._locked():
            pid = self._recorded_pid()
            if pid is None:
                return None
            if not self._is_ours(pid):
                self.pid_file.unlink(missing_ok=True)
                return None
            terminate(pid, grace_s)
            if alive(pid):
                raise BrokerError(f"the broker (pid {pid}) in {self.dir} did not exit after SIGTERM and SIGKILL")
            self.pid_file.unlink(missing_ok=True)
            return pid
