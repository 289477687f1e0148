"""Configuration and model specs: a frozen object that rejects unknown keys and bad values."""

from __future__ import annotations

import dataclasses

import pytest

from stream_cd.config import PipelineConfig
from stream_cd.errors import ConfigError
from stream_cd.learning.specs import PRESETS, ModelSpec
from stream_cd.learning.triggers import TriggerSettings


def test_defaults() -> None:
    cfg = PipelineConfig()
    assert (cfg.task, cfg.model, cfg.shadow, cfg.drift, cfg.on_drift) == ("auto", "logreg", "none", "adwin", "challenge")
    assert (cfg.alpha, cfg.min_sample, cfg.drop_budget, cfg.report_every) == (0.01, 1000, 50_000, 5000)
    assert (cfg.max_pending, cfg.feedback_ttl_s, cfg.feedback_default) == (100_000, 86_400.0, None)
    assert cfg.triggers == TriggerSettings()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PipelineConfig().alpha = 0.5  # type: ignore[misc]


def test_from_mapping_accepts_known_keys_and_nested_triggers() -> None:
    cfg = PipelineConfig.from_mapping({"model": "hoeffding-tree", "alpha": 0.05, "min_sample": 10, "triggers": {"volume_every": 10}})
    assert cfg.model == "hoeffding-tree" and cfg.alpha == 0.05 and cfg.triggers.volume_every == 10


@pytest.mark.parametrize("key", ["modle", "Model", "shadows", "delta"])
def test_unknown_keys_are_rejected_by_name(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_mapping({key: "x"})
    assert f"unknown configuration key {key!r}" in str(info.value) and "model" in str(info.value)


def test_unknown_trigger_keys_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown trigger setting 'every_minutes'"):
        PipelineConfig.from_mapping({"triggers": {"every_minutes": 5}})


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"task": "clustering"}, "task 'clustering' is not one of"),
        ({"drift": "ddm"}, "drift 'ddm' is not one of adwin, none"),
        ({"on_drift": "ignore"}, "on_drift 'ignore' is not one of challenge, reset"),
        ({"model": "forest"}, "unknown model spec 'forest'"),
        ({"shadow": "forrest"}, "unknown model spec 'forrest'"),
        ({"alpha": 0}, "alpha 0 must lie strictly between 0 and 1"),
        ({"alpha": 1.5}, "alpha 1.5"),
        ({"drift_delta": 1}, "drift_delta 1 must lie"),
        ({"min_sample": 0}, "min_sample 0 must be at least 1"),
        ({"report_every": -5}, "report_every -5"),
        ({"max_pending": 0}, "max_pending 0"),
        ({"feedback_ttl_s": 0}, "feedback_ttl_s 0"),
        ({"feedback_default": [1]}, "feedback_default [1] must be a label"),
        ({"drop_budget": 0}, "drop_budget 0"),
        ({"max_event_bytes": 0}, "max_event_bytes 0"),
        ({"drop_budget": 100, "min_sample": 200}, "drop_budget 100 is smaller than min_sample 200"),
        ({"triggers": TriggerSettings(volume_every=500)}, "volume trigger every 500 events is fewer than min_sample 1000"),
    ],
)
def test_bad_values_are_rejected_with_messages_naming_them(values: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_mapping(values)
    assert words in str(info.value)


# -- model specs ----------------------------------------------------------------------------


def test_presets() -> None:
    assert {"logreg", "hoeffding-tree", "adaptive-tree", "arf", "linreg"} <= set(PRESETS)
    for name, (_, task) in PRESETS.items():
        spec = ModelSpec.parse(f"  {name} ")
        assert spec.name == name and spec.task == task and str(spec) == name
        model = spec.build()
        assert hasattr(model, "learn_one") and hasattr(model, "predict_one")


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError) as info:
        ModelSpec.parse("forest")
    message = str(info.value)
    assert "'forest'" in message and all(name in message for name in PRESETS) and "package.module:factory" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("no_such_module_xyz:Model", "cannot import module 'no_such_module_xyz'"),
        ("river.linear_model:NoSuchModel", "has no 'NoSuchModel'"),
        ("river.linear_model:LogisticRegression.nope", "has no 'LogisticRegression.nope'"),
        ("stream_cd.learning.specs:__all__", "is not callable"),
    ],
)
def test_bad_import_paths_are_config_errors(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ModelSpec.parse(text)
    assert words in str(info.value) and text in str(info.value)


def test_a_factory_that_builds_no_model_is_a_config_error() -> None:
    spec = ModelSpec.parse("collections:OrderedDict")
    with pytest.raises(ConfigError, match="built OrderedDict, which has no learn_one/predict_one"):
        spec.build()


def test_user_factory_spec_works_end_to_end() -> None:
    from river import linear_model

    from stream_cd.model_key import ModelKey

    spec = ModelSpec.parse("river.linear_model:LogisticRegression")
    assert spec.task is None
    a, b = spec.build(), spec.build()
    assert type(a) is linear_model.LogisticRegression and a is not b
    spec.check_task("classification")
    spec.check_task("regression")  # a user's factory fits whatever task it was written for
    slot = ModelKey("k", PipelineConfig(model="river.linear_model:LogisticRegression", drift="none"))
    for i in range(50):
        slot.learn({"a": float(i % 2)}, i % 2 == 1, 0)
    assert slot.task == "classification" and slot.learned == 50
    assert slot.predict({"a": 1.0}) is True and slot.predict({"a": 0.0}) is False


def test_check_task_of_a_preset() -> None:
    ModelSpec.parse("linreg").check_task("regression")
    with pytest.raises(ConfigError, match="'linreg' is for regression, but the task is classification"):
        ModelSpec.parse("linreg").check_task("classification")


@pytest.mark.parametrize("name", ["logreg", "linreg"])
def test_a_ready_copy_of_a_preset_learns_exactly_as_a_freshly_built_one(name: str) -> None:
    from river.datasets import synth

    stream = synth.Agrawal(seed=5) if name == "logreg" else synth.Friedman(seed=5)
    factory, _ = PRESETS[name]
    fresh, copy = factory(), ModelSpec.parse(name).build()
    other = ModelSpec.parse(name).build()  # a second copy shares nothing with the first
    for x, y in stream.take(2_000):
        assert copy.predict_one(x) == fresh.predict_one(x)
        fresh.learn_one(x, y)
        copy.learn_one(x, y)
    assert other.predict_one(x) == factory().predict_one(x)  # untouched by what the copy learned
