"""Fixtures of the tests on a real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kafka.pipeline_helpers import kill_leftovers


@pytest.fixture(autouse=True)
def _no_leftover_workers() -> Iterator[None]:
    """A worker subprocess never outlives its test, pass or fail."""
    yield
    kill_leftovers()
