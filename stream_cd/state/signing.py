"""Signed model state: what a checkpoint holds and how it is sealed.

A checkpoint is a pickle, and unpickling runs code, so every stored state
carries an HMAC-SHA256 of its bytes under a secret key (``STREAM_CD_STATE_KEY``)
and is verified *before* anything is unpickled. Anyone who can write to the
state store but does not hold the key cannot make a worker load their bytes.

Layout of a sealed blob: ``b"SCD1"`` + 32-byte HMAC + payload. The HMAC
covers the record's store key too (``context``), so a valid blob copied under
another key is refused like a forged one.

>>> blob = seal(b"payload", b"secret", context=b"model:a")
>>> open_sealed(blob, b"secret", what="model key 'a' at offset 7", context=b"model:a")
b'payload'
>>> open_sealed(blob, b"secret", what="model key 'b' at offset 8", context=b"model:b")
Traceback (most recent call last):
...
stream_cd.errors.StateError: refused checkpoint of model key 'b' at offset 8: its signature does not match (tampered, or signed with another STREAM_CD_STATE_KEY)
>>> tampered = blob[:-1] + b"X"
>>> open_sealed(tampered, b"secret", what="model key 'a' at offset 7", context=b"model:a")
Traceback (most recent call last):
...
stream_cd.errors.StateError: refused checkpoint of model key 'a' at offset 7: its signature does not match (tampered, or signed with another STREAM_CD_STATE_KEY)
>>> open_sealed(b"raw pickle", b"secret", what="model key 'a' at offset 7", context=b"model:a")
Traceback (most recent call last):
...
stream_cd.errors.StateError: refused checkpoint of model key 'a' at offset 7: it is not signed
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from stream_cd.state import pickling
from stream_cd.errors import StateError

__all__ = ["STATE_KEY_ENV", "state_key_from_env", "seal", "open_sealed", "dump_state", "dump_state_and_copy", "load_state", "unpickle_state"]

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


def _mac(key: bytes, context: bytes, payload: bytes) -> bytes:
    mac = hmac.new(key, len(context).to_bytes(4, "big") + context, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def seal(payload: bytes, key: bytes, context: bytes = b"") -> bytes:
    """Prefix ``payload`` with its HMAC-SHA256 under ``key``, bound to ``context``."""
    return _MAGIC + _mac(key, context, payload) + payload


def open_sealed(blob: bytes | None, key: bytes, what: str, context: bytes = b"") -> bytes:
    """Return the payload of a sealed blob, or raise :class:`StateError` naming ``what``."""
    if not blob or not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _DIGEST:
        raise StateError(f"refused checkpoint of {what}: it is not signed")
    digest = blob[len(_MAGIC) : len(_MAGIC) + _DIGEST]
    payload = blob[len(_MAGIC) + _DIGEST :]
    if not hmac.compare_digest(digest, _mac(key, context, payload)):
        raise StateError(
            f"refused checkpoint of {what}: its signature does not match "
            f"(tampered, or signed with another {STATE_KEY_ENV})"
        )
    return payload


def dump_state(obj: Any, key: bytes, record: str = "") -> bytes:
    """Pickle (so that it unpickles as fast as it was: :mod:`stream_cd.state.pickling`) and seal,
    bound to the store key ``record``."""
    return seal(pickling.dumps(obj), key, record.encode())


def dump_state_and_copy(obj: Any, key: bytes, record: str, what: str) -> tuple[bytes, Any]:
    """What :func:`dump_state` gives, and the copy of ``obj`` it unpickles to, from one
    pickling (a worker goes on with the copy: :mod:`stream_cd.state.pickling`). Raises
    :class:`StateError` when the pickle cannot be read back."""
    payload = pickling.dumps(obj)
    return seal(payload, key, record.encode()), _unpickle(payload, what)


def load_state(blob: bytes | None, key: bytes, what: str, record: str = "") -> Any:
    """Verify (for the store key ``record``), then unpickle. Nothing is unpickled unless
    the signature holds."""
    return _unpickle(open_sealed(blob, key, what, record.encode()), what)


def _unpickle(payload: bytes, what: str) -> Any:
    try:
        return pickling.loads(payload)
    except Exception as err:  # signed by us, yet unreadable here (a newer format, a class gone)
        raise StateError(f"refused checkpoint of {what}: it is signed but cannot be loaded here: {err!r}") from err


def unpickle_state(payload: bytes, what: str) -> Any:
    """Unpickle the payload of a blob :func:`open_sealed` has verified; :class:`StateError`
    naming ``what`` when it cannot be loaded here."""
    return _unpickle(payload, what)
