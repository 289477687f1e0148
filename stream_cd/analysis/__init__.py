"""Offline studies: the HTML report of a run's decisions, and the value of data freshness."""

__all__: list[str] = []
