"""Watching a running worker: the hooks it calls, the metrics they feed, its log lines.

``hooks`` is what the worker loop calls (a few times per batch, never per
event); ``metrics`` keeps the counts in plain Python; ``exporter`` is the one
module that imports prometheus_client, and turns them into Prometheus series
when scraped; ``logs`` formats the worker's log lines (human or JSON).
"""

__all__: list[str] = []
