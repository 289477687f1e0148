"""What is served to whom: the router (which arm serves, which arms score), the
exposures (what was served, awaiting feedback) and the sessions (cold start)."""

__all__: list[str] = []
