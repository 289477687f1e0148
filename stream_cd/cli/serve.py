"""``stream-cd serve``: the HTTP endpoint for applications (``producers.serve``), wired to the flags.

aiohttp and Kafka are imported only when the command runs, so the rest of the
command line never loads them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_cd.cli.options import add_kafka_flags, add_topic_flags, kafka_options, positive_float
from stream_cd.errors import ConfigError
from stream_cd.transport import Topics

__all__ = ["register", "read_token"]

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 5.0  # the same as producers.serve.DEFAULT_TIMEOUT_S, without importing aiohttp


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve",
        help="an HTTP endpoint: POST /predict and /feedback through Kafka, GET /healthz",
        description="Serve applications over HTTP. POST /predict with an event (or a list) produces it to "
        "<prefix>.events as a request keyed by its model key (an id is assigned when it has none) and answers "
        "with the prediction a worker served for it once it appears on <prefix>.predictions (run the workers "
        "with --publish-predictions): 504 naming the request id when none comes within --timeout, 400 with the "
        "reason for malformed JSON or an invalid event (nothing is produced). POST /feedback produces feedback "
        '({"key", "id", "y"}). GET /healthz. SIGTERM or SIGINT stops it.',
    )
    add_kafka_flags(p)
    add_topic_flags(p, events=False)
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P",
                   help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT}). The URL is printed once it listens")
    p.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds to wait for a worker's prediction before answering 504 (default: {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--token-file", metavar="F",
                   help="every request but GET /healthz needs 'Authorization: Bearer <token>', the token being F's "
                   "content (surrounding whitespace ignored); 401 without it")
    p.set_defaults(run=_serve)


def read_token(path: str) -> str:
    """The bearer token in ``path``, without surrounding whitespace; a clear error if there is none.

    >>> read_token("/nonexistent/token")
    Traceback (most recent call last):
    ...
    stream_cd.errors.ConfigError: --token-file /nonexistent/token: cannot read it (No such file or directory)
    """
    try:
        token = Path(path).read_text().strip()
    except OSError as err:
        raise ConfigError(f"--token-file {path}: cannot read it ({err.strerror})") from None
    if not token:
        raise ConfigError(f"--token-file {path} is empty; it must hold the bearer token")
    return token


def _serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a port (0 to 65535)")
    token = read_token(args.token_file) if args.token_file else None
    from producers.serve import serve

    def ready(url: str) -> None:
        print(f"serving on {url}", flush=True)
        print(f"stream-cd serve: answering for {args.topic_prefix}.events at {url}", file=sys.stderr, flush=True)

    serve(args.bootstrap, Topics(args.topic_prefix), host=args.host, port=args.port, timeout_s=args.timeout,
          token=token, on_ready=ready, client_options=kafka_options(args))
    return 0
