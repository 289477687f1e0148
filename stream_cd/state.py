"""Signed model state: what a checkpoint holds and how it is sealed.

A checkpoint is a pickle, and unpickling runs code, so every stored state
carries an HMAC-SHA256 of its bytes under a secret key (``STREAM_CD_STATE_KEY``)
and is verified *before* anything is unpickled. Anyone who can write to the
state store but does not hold the key cannot make a worker load their bytes.

Layout of a sealed blob: ``b"SCD1"`` + 32-byte HMAC + payload.

>>> blob = seal(b"payload", b"secret")
>>> open_sealed(blob, b"secret", what="model key 'a' at offset 7")
b'payload'
>>> tampered = blob[:-1] + b"X"
>>> open_sealed(tampered, b"secret", what="model key 'a' at offset 7")
Traceback (most recent call last):
...
stream_cd.errors.StateError: refused checkpoint of model key 'a' at offset 7: its signature does not match (tampered, or signed with another STREAM_CD_STATE_KEY)
>>> open_sealed(b"raw pickle", b"secret", what="model key 'a' at offset 7")
Traceback (most recent call last):
...
stream_cd.errors.StateError: refused checkpoint of model key 'a' at offset 7: it is not signed
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
from typing import Any

from stream_cd.errors import StateError

__all__ = ["STATE_KEY_ENV", "state_key_from_env", "seal", "open_sealed", "dump_state", "load_state"]

STATE_KEY_ENV = "STREAM_CD_STATE_KEY"
_MAGIC = b"SCD1"
_DIGEST = 32


def state_key_from_env(required: bool = True) -> bytes | None:
    """The signing key from ``STREAM_CD_STATE_KEY``; a clear error when required and missing."""
    value = os.environ.get(STATE_KEY_ENV, "")
    if not value:
        if required:
            raise StateError(
                f"{STATE_KEY_ENV} is not set: model state is signed so that no one without the key can make a "
                f"worker unpickle their bytes; set it to a long random secret shared by all workers "
                f"(for example: export {STATE_KEY_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))'))"
            )
        return None
    if len(value) < 16:
        raise StateError(f"{STATE_KEY_ENV} is {len(value)} characters; use at least 16 (32 random bytes in hex is best)")
    return value.encode()


def seal(payload: bytes, key: bytes) -> bytes:
    """Prefix ``payload`` with its HMAC-SHA256 under ``key``."""
    return _MAGIC + hmac.new(key, payload, hashlib.sha256).digest() + payload


def open_sealed(blob: bytes | None, key: bytes, what: str) -> bytes:
    """Return the payload of a sealed blob, or raise :class:`StateError` naming ``what``."""
    if not blob or not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _DIGEST:
        raise StateError(f"refused checkpoint of {what}: it is not signed")
    digest = blob[len(_MAGIC) : len(_MAGIC) + _DIGEST]
    payload = blob[len(_MAGIC) + _DIGEST :]
    if not hmac.compare_digest(digest, hmac.new(key, payload, hashlib.sha256).digest()):
        raise StateError(
            f"refused checkpoint of {what}: its signature does not match "
            f"(tampered, or signed with another {STATE_KEY_ENV})"
        )
    return payload


def dump_state(obj: Any, key: bytes) -> bytes:
    """Pickle and seal."""
    return seal(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), key)


def load_state(blob: bytes | None, key: bytes, what: str) -> Any:
    """Verify, then unpickle. Nothing is unpickled unless the signature holds."""
    return pickle.loads(open_sealed(blob, key, what))
