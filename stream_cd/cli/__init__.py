"""The ``stream-cd`` command line.

Each command group lives in a module of its own that exposes ``register(subparsers)``;
this module only assembles them and turns :class:`~stream_cd.errors.StreamCDError`
into a clear message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stream_cd.errors import StreamCDError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every command registered.

    >>> parser = build_parser()
    >>> parser.prog
    'stream-cd'
    """
    from stream_cd.cli import analysis, experiment, kafka, pipeline, serve, state

    parser = argparse.ArgumentParser(
        prog="stream-cd",
        description="Streaming online learning for the continuous deployment of ML models.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kafka.register(commands)
    pipeline.register(commands)
    state.register(commands)
    experiment.register(commands)
    serve.register(commands)
    analysis.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status."""
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="stream-cd: %(levelname)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except StreamCDError as err:
        print(f"stream-cd {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
