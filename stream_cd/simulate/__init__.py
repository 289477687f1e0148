"""Streams to try it on: River's generators and bundled datasets, and simulated populations."""

__all__: list[str] = []
