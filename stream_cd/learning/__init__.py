"""What one model is and how it learns: specs, tasks, arms, drift, triggers, versions, guards.

Nothing here knows about experiments, routing or Kafka.
"""

__all__: list[str] = []
