"""Signed model state: what a checkpoint holds and how it is sealed.

A checkpoint is a pickle, and unpickling runs code, so every stored state
carries an HMAC-SHA256 of its bytes under a secret key (``STREAM_CD_STATE_KEY``)
and is verified *before* anything is unpickled. Anyone who can write to the
state store but does not hold the key cannot make a worker load their bytes.

Layout of a sealed blob: ``b"SCD1"`` + 32-byte HMAC + payload. The HMAC
covers the record key too (``context``: ``model:<key>`` or ``partition:<n>``,
not the ring slot), so a valid blob copied under another record is refused like
a forged one. Nothing binds a blob to its version, though: an older valid
version of the same record, written into the store again by someone who can
write there, is taken for the newest (it verifies), and the key then resumes
from it without the events since. Keep the checkpoints topic writable by the
workers alone (ACLs).

Keys rotate: ``STREAM_CD_STATE_KEY`` may hold several keys, comma-separated,
newest first. A worker signs with the first and accepts a blob signed with
any of them, so state signed with the old key restores under ``"new,old"``
and is refused under ``"new"`` alone. Everywhere a key is taken, one key
(``bytes``) or such a tuple of keys (:data:`StateKeys`) will do.

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
>>> old = seal(b"payload", b"old-secret", context=b"model:a")
>>> open_sealed(old, (b"new-secret", b"old-secret"), what="model key 'a'", context=b"model:a")
b'payload'
>>> signed_by(old, (b"new-secret", b"old-secret"), context=b"model:a")
2
>>> open_sealed(old, (b"new-secret",), what="model key 'a'", context=b"model:a")
Traceback (most recent call last):
...
stream_cd.errors.StateError: refused checkpoint of model key 'a': its signature does not match (tampered, or signed with another STREAM_CD_STATE_KEY)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Union

from stream_cd.state import pickling
from stream_cd.errors import StateError

__all__ = [
    "STATE_KEY_ENV", "StateKeys", "state_key_from_env", "parse_state_keys", "signing_key", "seal", "open_sealed",
    "signed_by", "dump_state", "dump_state_and_copy", "load_state", "unpickle_state",
]

STATE_KEY_ENV = "STREAM_CD_STATE_KEY"
MIN_KEY_CHARS = 16
_MAGIC = b"SCD1"
_DIGEST = 32

StateKeys = Union[bytes, tuple[bytes, ...]]
"""One key, or several newest first: sign with the first, accept any."""


def state_key_from_env(required: bool = True) -> tuple[bytes, ...] | None:
    """The signing keys from ``STREAM_CD_STATE_KEY`` (:func:`parse_state_keys`); a clear
    error when required and missing."""
    value = os.environ.get(STATE_KEY_ENV, "")
    if not value:
        if required:
            raise StateError(
                f"{STATE_KEY_ENV} is not set: model state is signed so that no one without the key can make a "
                f"worker unpickle their bytes; set it to a long random secret shared by all workers "
                f"(for example: export {STATE_KEY_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))'))"
            )
        return None
    return parse_state_keys(value)


def parse_state_keys(value: str) -> tuple[bytes, ...]:
    """Comma-separated keys, newest first (spaces around each are dropped), each at least
    16 characters; an error names a bad key by its position, never by its value.

    >>> parse_state_keys("new-key-0123456789, old-key-0123456789")
    (b'new-key-0123456789', b'old-key-0123456789')
    >>> parse_state_keys("new-key-0123456789,short")
    Traceback (most recent call last):
    ...
    stream_cd.errors.StateError: STREAM_CD_STATE_KEY key 2 of 2 is 5 characters; use at least 16 (32 random bytes in hex is best)
    """
    keys = tuple(part.strip() for part in value.split(","))
    for position, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_CHARS:
            which = STATE_KEY_ENV if len(keys) == 1 else f"{STATE_KEY_ENV} key {position} of {len(keys)}"
            raise StateError(
                f"{which} is {len(key)} characters; use at least {MIN_KEY_CHARS} (32 random bytes in hex is best)"
            )
    return tuple(key.encode() for key in keys)


def _keys(key: StateKeys) -> tuple[bytes, ...]:
    return (key,) if isinstance(key, bytes) else tuple(key)


def signing_key(key: StateKeys) -> bytes:
    """The key new state is signed with: the first (newest) one.

    >>> signing_key((b"new", b"old")), signing_key(b"only")
    (b'new', b'only')
    """
    return key if isinstance(key, bytes) else key[0]


def _mac(key: bytes, context: bytes, payload: bytes) -> bytes:
    mac = hmac.new(key, len(context).to_bytes(4, "big") + context, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def seal(payload: bytes, key: StateKeys, context: bytes = b"") -> bytes:
    """Prefix ``payload`` with its HMAC-SHA256 under ``key`` (the first, if several), bound
    to ``context``."""
    return _MAGIC + _mac(signing_key(key), context, payload) + payload


def signed_by(blob: bytes | None, key: StateKeys, context: bytes = b"") -> int | None:
    """Which of the keys (1 = the first, newest) signed ``blob`` for ``context``; None when
    it is unsigned, tampered or signed with none of them."""
    if not blob or not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _DIGEST:
        return None
    digest = blob[len(_MAGIC) : len(_MAGIC) + _DIGEST]
    payload = memoryview(blob)[len(_MAGIC) + _DIGEST :]
    for position, candidate in enumerate(_keys(key), 1):
        if hmac.compare_digest(digest, _mac(candidate, context, payload)):
            return position
    return None


def open_sealed(blob: bytes | None, key: StateKeys, what: str, context: bytes = b"") -> bytes:
    """Return the payload of a sealed blob signed with any of the keys, or raise
    :class:`StateError` naming ``what``."""
    if not blob or not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _DIGEST:
        raise StateError(f"refused checkpoint of {what}: it is not signed")
    if signed_by(blob, key, context) is None:
        keys = len(_keys(key))
        another = f"another {STATE_KEY_ENV}" if keys == 1 else f"none of the {keys} keys in {STATE_KEY_ENV}"
        raise StateError(f"refused checkpoint of {what}: its signature does not match (tampered, or signed with {another})")
    return blob[len(_MAGIC) + _DIGEST :]


def dump_state(obj: Any, key: StateKeys, record: str = "") -> bytes:
    """Pickle (so that it unpickles as fast as it was: :mod:`stream_cd.state.pickling`) and seal,
    bound to the store key ``record``."""
    return seal(pickling.dumps(obj), key, record.encode())


def dump_state_and_copy(obj: Any, key: StateKeys, record: str, what: str) -> tuple[bytes, Any]:
    """What :func:`dump_state` gives, and the copy of ``obj`` it unpickles to, from one
    pickling (a worker goes on with the copy: :mod:`stream_cd.state.pickling`). Raises
    :class:`StateError` when the pickle cannot be read back."""
    payload = pickling.dumps(obj)
    return seal(payload, key, record.encode()), _unpickle(payload, what)


def load_state(blob: bytes | None, key: StateKeys, what: str, record: str = "") -> Any:
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
