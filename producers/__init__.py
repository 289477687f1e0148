"""Kafka-facing processes that write: replay of recorded streams, generators' output, decisions."""
