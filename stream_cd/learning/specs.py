"""Model specs: how a model is named on the command line and built afresh.

A spec is either a preset name or ``package.module:factory``, where the factory
is a zero-argument callable returning a River model. Building a spec always
gives a fresh, untrained model, which is what a stateless retrain needs.

>>> spec = ModelSpec.parse("logreg")
>>> spec.name, spec.task
('logreg', 'classification')
>>> model = spec.build()
>>> [type(step).__name__ for step in model.steps.values()]
['StandardScaler', 'LogisticRegression']
>>> type(ModelSpec.parse("river.linear_model:LinearRegression").build()).__name__
'LinearRegression'
>>> ModelSpec.parse("forest")
Traceback (most recent call last):
...
stream_cd.errors.ConfigError: unknown model spec 'forest': use a preset (adaptive-tree, arf, arf-reg, hoeffding-tree, hoeffding-tree-reg, linreg, logreg) or package.module:factory
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from river import forest, linear_model, preprocessing, tree

from stream_cd.errors import ConfigError
from stream_cd.state.pickling import dumps, loads

__all__ = ["ModelSpec", "PRESETS"]


def _logreg() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def _linreg() -> Any:
    return preprocessing.StandardScaler() | linear_model.LinearRegression()


# The presets that are River pipelines. A new pipeline builds its execution plan on its
# first use, reading every step's method signatures (inspect.signature): about 100 us a
# pipeline, against about 30 us to unpickle one whose plan is built. With thousands of model
# keys, each with a champion and a shadow, that is most of what a new key costs.
_READY: dict[str, bytes | None] = {"logreg": None, "linreg": None}


def _ready_copy(name: str, factory: Callable[[], Any]) -> Any:
    """A copy of the preset pipeline ``name``, fresh and with its plan built.

    The plan is built by predicting for an empty event, which changes nothing in a
    scaler and a linear model (River learns nothing while predicting, unless asked to);
    the copy is then the same model as a freshly built one, event for event.
    """
    blob = _READY[name]
    if blob is None:
        model = factory()
        model.predict_one({})
        blob = _READY[name] = dumps(model)
    return loads(blob)  # attributes kept inline, as built (see stream_cd.state.pickling)


PRESETS: dict[str, tuple[Callable[[], Any], str]] = {
    "logreg": (_logreg, "classification"),
    "hoeffding-tree": (tree.HoeffdingTreeClassifier, "classification"),
    "adaptive-tree": (lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=42), "classification"),
    "arf": (lambda: forest.ARFClassifier(seed=42), "classification"),
    "linreg": (_linreg, "regression"),
    "hoeffding-tree-reg": (tree.HoeffdingTreeRegressor, "regression"),
    "arf-reg": (lambda: forest.ARFRegressor(seed=42), "regression"),
}


@dataclass(frozen=True)
class ModelSpec:
    """A named recipe for a fresh River model."""

    name: str
    factory: Callable[[], Any]
    task: str | None  # None: a user's factory, fits whatever task it was written for

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """Parse a preset name or ``package.module:factory``."""
        text = text.strip()
        if text in PRESETS:
            factory, task = PRESETS[text]
            return cls(text, factory, task)
        if ":" in text:
            return cls(text, _import_factory(text), None)
        presets = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown model spec {text!r}: use a preset ({presets}) or package.module:factory")

    def build(self) -> Any:
        """A fresh, untrained model of this spec.

        A preset pipeline is a copy of one made ready once (see :func:`_ready_copy`); a
        user's factory is called every time, since it may mean each model to differ.

        >>> a, b = ModelSpec.parse("logreg").build(), ModelSpec.parse("logreg").build()
        >>> a is not b and a["LogisticRegression"] is not b["LogisticRegression"]
        True
        >>> a.learn_one({"f": 1.0}, True); b.predict_proba_one({"f": 1.0})  # b learned nothing
        {False: 0.5, True: 0.5}
        """
        if self.name in _READY and self.factory is PRESETS[self.name][0]:
            return _ready_copy(self.name, self.factory)
        model = self.factory()
        if not hasattr(model, "learn_one") or not hasattr(model, "predict_one"):
            raise ConfigError(f"model spec {self.name!r} built {type(model).__name__}, which has no learn_one/predict_one")
        return model

    def check_task(self, task: str) -> None:
        """Raise :class:`ConfigError` if this spec cannot serve ``task``."""
        if self.task is not None and self.task != task:
            raise ConfigError(f"model spec {self.name!r} is for {self.task}, but the task is {task}; pick a {task} model")

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        # Pickled by name: a stored model state never carries code of its own for the spec.
        return (ModelSpec.parse, (self.name,))


def _import_factory(text: str) -> Callable[[], Any]:
    module_name, _, attr = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"model spec {text!r}: cannot import module {module_name!r} ({err})") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ConfigError(f"model spec {text!r}: module {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise ConfigError(f"model spec {text!r}: {attr!r} is not callable")
    return factory

