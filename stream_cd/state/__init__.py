"""Checkpoints that are safe and fast: signing (HMAC before unpickling) and pickling
(unpickled objects keep their attributes inline)."""

__all__: list[str] = []
