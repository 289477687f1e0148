"""Kafka-facing processes that read: the training worker, the decisions subscriber, admin helpers."""
