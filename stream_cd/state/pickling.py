"""Pickling model state so that what is unpickled runs as fast as what was built.

CPython 3.11 keeps an object's attributes inline, in the object itself, until
something asks for its ``__dict__``; from then on they live in a dict, and
reading them is up to three times slower. Pickling asks for the ``__dict__`` of
every object it saves, and unpickling fills the ``__dict__`` of every object it
makes. River's models learn mostly by reading attributes, so a model that had
been checkpointed, or restored from a checkpoint, learned about a third slower.

:func:`dumps` pickles so that unpickling gives each object its attributes one by
one, as its ``__init__`` did, which keeps them inline. The objects that were
pickled stay slow, so a worker goes on with the unpickled copy of what it
checkpoints (:meth:`stream_cd.worker.Worker.commit`). Measured on a logreg
champion and shadow: 22.0 µs per event before a checkpoint, 29.0 after a plain
pickle round trip, 23.2 after one through :func:`dumps`.

Strings are saved as references and loaded interned (``sys.intern``), so a
restored model's dicts are keyed by the same name objects as the events the
worker gets from its fetch process (:mod:`consumers.batch_pickle`): looking up
a key that is the very same object is faster than comparing equal copies.

Checkpoints name :func:`set_attributes` and :func:`set_attributes_after_setstate`,
and hold persistent references: a version of stream-cd from before this module
cannot load them (stop every worker of a group before moving back to one), and
these functions must keep their names and module.

>>> from river import preprocessing
>>> scaler = preprocessing.StandardScaler()
>>> for x in ({"a": 1.0}, {"a": 3.0}):
...     scaler.learn_one(x)
>>> loads(dumps(scaler)).transform_one({"a": 3.0})
{'a': 1.0}
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
from typing import Any

__all__ = ["dumps", "loads"]


def dumps(obj: Any) -> bytes:
    """``obj`` pickled for :func:`loads`: plain objects in it unpickle with inline
    attributes, and its strings interned."""
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return out.getvalue()


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` (or plain ``pickle.dumps``) made."""
    return _Unpickler(io.BytesIO(data)).load()


def set_attributes(obj: Any, state: dict[str, Any]) -> None:
    """Give an unpickled object its attributes one at a time (how pickles from
    :func:`dumps` restore a plain object's state)."""
    for name, value in state.items():
        object.__setattr__(obj, name, value)  # as a frozen dataclass's __init__ does


def set_attributes_after_setstate(obj: Any, state: dict[str, Any]) -> None:
    """Restore an object whose class's own ``__setstate__`` only fills defaults, then updates
    ``self.__dict__`` (:data:`SETSTATE_FILLS_DICT`): run it on a scratch instance, then give
    ``obj`` the attributes it made one at a time."""
    scratch = object.__new__(type(obj))
    type(obj).__setstate__(scratch, state)
    set_attributes(obj, vars(scratch))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj if type(obj) is str else None  # saved as text, loaded interned

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if not cls.__flags__ & _MANAGED_DICT or cls in copyreg.dispatch_table:
            return NotImplemented  # attributes not kept inline (nothing to gain), or a reducer of its own
        reduced = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        if not isinstance(reduced, tuple) or reduced[0] is not copyreg.__newobj__ or len(reduced) < 3:
            return NotImplemented  # saved its own way (a __reduce__ of its own)
        callable_, args, state, listitems, dictitems = (*reduced, None, None)[:5]
        if type(state) is not dict or not all(type(name) is str for name in state):
            return NotImplemented  # slots too, or names setattr would refuse
        if not state.keys().isdisjoint(_data_descriptors(cls)):
            return NotImplemented  # a property would take the place of a plain store
        if getattr(cls, "__setstate__", None) is None:
            return callable_, args, state, listitems, dictitems, set_attributes
        if f"{cls.__module__}.{cls.__qualname__}" in SETSTATE_FILLS_DICT and args == (cls,):
            return callable_, args, state, listitems, dictitems, set_attributes_after_setstate
        return NotImplemented  # its own __setstate__ may tie things to the object itself


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not str:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return sys.intern(pid)


# Classes whose __setstate__ only fills defaults for older pickles, then updates
# self.__dict__: safe to run on a scratch instance (it ties nothing to the object).
SETSTATE_FILLS_DICT = frozenset({
    "river.preprocessing.scale.StandardScaler",
    "river.preprocessing.scale.MinMaxScaler",
    "river.preprocessing.scale.MaxAbsScaler",
})
_MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT: instances of the class keep attributes inline
_DESCRIPTORS: dict[type, frozenset[str]] = {}


def _data_descriptors(cls: type) -> frozenset[str]:
    """Names a ``setattr`` on an instance of ``cls`` would hand to a descriptor (a property)."""
    names = _DESCRIPTORS.get(cls)
    if names is None:
        names = _DESCRIPTORS[cls] = frozenset(
            name for klass in cls.__mro__ for name, value in vars(klass).items()
            if hasattr(type(value), "__set__") and name != "__dict__"
        )
    return names
