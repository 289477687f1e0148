"""Learning tasks: classification or regression, with the label rules of each.

>>> infer_task(True), infer_task("cat"), infer_task(3), infer_task(2.5)
('classification', 'classification', 'classification', 'regression')
>>> check_label("regression", True)
Traceback (most recent call last):
...
stream_cd.errors.InvalidEvent: label y is True, a boolean; a regression task needs a number
"""

from __future__ import annotations

from typing import Any, Literal

from river import metrics

from stream_cd.errors import ConfigError, InvalidEvent

__all__ = ["Task", "TASKS", "infer_task", "check_label", "make_metric", "loss_of"]

Task = Literal["classification", "regression"]
TASKS = ("classification", "regression", "auto")


def infer_task(y: Any) -> Task:
    """Infer the task from the first label: booleans, strings and whole numbers
    are class labels; other numbers are regression targets."""
    return "regression" if type(y) is float else "classification"


def check_label(task: Task, y: Any) -> Any:
    """Return ``y`` when it fits the task, else raise :class:`InvalidEvent`."""
    kind = type(y)
    if task == "classification":
        if kind is float:
            raise InvalidEvent(f"label y is {y!r}, a number with a fraction; a classification task needs a class")
        return y
    if kind is bool or kind is str:
        name = "a boolean" if kind is bool else "a string"
        raise InvalidEvent(f"label y is {y!r}, {name}; a regression task needs a number")
    return y


def make_metric(task: Task) -> metrics.base.Metric:
    """The served metric of a task: Accuracy for classification, MAE for regression."""
    if task == "classification":
        return metrics.Accuracy()
    if task == "regression":
        return metrics.MAE()
    raise ConfigError(f"task {task!r} is not one of classification, regression")


def loss_of(task: Task, y: Any, y_pred: Any) -> float:
    """Per-event loss: 0/1 error for classification, absolute error for regression.

    A model that cannot predict yet (``None``) counts as a full error.

    >>> loss_of("classification", True, False), loss_of("regression", 2.0, 1.5)
    (1.0, 0.5)
    """
    if task == "classification":
        return 0.0 if y_pred == y else 1.0
    if y_pred is None:
        return abs(float(y))
    return abs(float(y) - float(y_pred))
