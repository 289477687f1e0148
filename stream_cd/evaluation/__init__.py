"""How a new model earns live traffic: anytime-valid sequential tests, the paired
shadow experiment, and the policy that turns verdicts, drift alarms and triggers
into decisions."""

__all__: list[str] = []
