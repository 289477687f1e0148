"""One model key's learning state (issue 3, items 2-8): exactness, shadow, promotion,
versions and lineage, drift retrains and resets, triggers."""

from __future__ import annotations

import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from stream_cd.config import PipelineConfig
from stream_cd.simulate.datasets import generate
from stream_cd.decisions import ACTIONS, TRIGGERS, Decision
from stream_cd.errors import ConfigError, InvalidEvent
from stream_cd.pipeline import Pipeline
from stream_cd.evaluation.sequential import DiscordantPairsTest
from stream_cd.model_key import ModelKey
from stream_cd.learning.triggers import TriggerSettings
from stream_cd.learning.versions import Version

EXACT = PipelineConfig(model="logreg", shadow="none", drift="none")


def reference_accuracy() -> float:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    return evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy()).get()


def run_slot(slot: ModelKey, events) -> list[Decision]:
    out: list[Decision] = []
    for e in events:
        out += slot.learn(e["x"], e["y"], e["ts"])
    return out


# -- exactness -------------------------------------------------------------------


def test_champion_accuracy_on_phishing_equals_progressive_val_score_exactly() -> None:
    slot = ModelKey("phish", EXACT)
    for x, y in datasets.Phishing():
        assert slot.learn(x, y, ts=0) == []
    summary = slot.summary()
    assert summary["metric"]["name"] == "Accuracy"
    assert summary["metric"]["value"] == reference_accuracy()
    assert summary["learned"] == summary["events_seen"] == 1250
    assert summary["champion_version"] == "v1.0" and summary["retrains"] == summary["promotions"] == 0


def test_pipeline_on_generated_json_bytes_equals_progressive_val_score_exactly() -> None:
    pipeline = Pipeline(EXACT)
    for event in generate("phishing", 1250):
        outcome = pipeline.process(orjson.dumps(event), ts=0)
        assert outcome.invalid is None and outcome.decisions == []
    summary = pipeline.summary()
    assert summary["events"] == 1250 and summary["invalid"] == 0
    assert summary["models"]["default"]["metric"]["value"] == reference_accuracy()


def test_regression_linreg_mae_on_trump_approval_equals_progressive_val_score_exactly() -> None:
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    expected = evaluate.progressive_val_score(datasets.TrumpApproval(), model, metrics.MAE()).get()
    slot = ModelKey("trump", PipelineConfig(model="linreg", drift="none"))
    assert slot.task == "regression"
    for x, y in datasets.TrumpApproval():
        slot.learn(x, y, ts=0)
    assert slot.summary()["metric"] == {"name": "MAE", "value": expected}
    # and through the pipeline on JSON bytes (floats survive the JSON round trip exactly)
    pipeline = Pipeline(PipelineConfig(model="linreg", drift="none"))
    for x, y in datasets.TrumpApproval():
        assert pipeline.process(orjson.dumps({"key": "t", "x": x, "y": y}), ts=0).invalid is None
    assert pipeline.summary()["models"]["t"]["metric"]["value"] == expected


def test_a_shadow_never_changes_the_champion_metric() -> None:
    plain = ModelKey("k", EXACT)
    shadowed = ModelKey("k", PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="none",
                                             alpha=1e-300, min_sample=10_000, drop_budget=None))
    for x, y in datasets.Phishing():
        plain.learn(x, y, 0)
        shadowed.learn(x, y, 0)
    assert shadowed.summary()["metric"] == plain.summary()["metric"]
    assert shadowed.challenger is not None and shadowed.challenger.learned == 1250
    assert shadowed.champion.learned == 1250


# -- task --------------------------------------------------------------------


def test_task_comes_from_the_preset_or_the_first_label() -> None:
    assert ModelKey("k", PipelineConfig(model="logreg")).task == "classification"
    user = ModelKey("k", PipelineConfig(model="river.linear_model:LinearRegression"))
    assert user.task is None and user.summary()["metric"] is None
    user.learn({"a": 1.0}, 2.5, 0)
    assert user.task == "regression" and user.summary()["metric"]["name"] == "MAE"
    # a later label of the wrong kind is an invalid event, not a crash, and nothing is learned
    with pytest.raises(InvalidEvent, match="regression task needs a number"):
        user.learn({"a": 1.0}, True, 0)
    assert user.learned == 1


def test_preset_of_the_wrong_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'logreg' is for classification, but the task is regression"):
        ModelKey("k", PipelineConfig(model="logreg", task="regression"))
    with pytest.raises(ConfigError, match="'linreg' is for regression"):
        ModelKey("k", PipelineConfig(model="logreg", shadow="linreg"))
    auto = ModelKey("k", PipelineConfig(model="river.linear_model:LogisticRegression", shadow="linreg"))
    with pytest.raises(ConfigError, match="linreg"):
        auto.learn({"a": 1.0}, True, 0)


# -- versions, shadow and promotion -------------------------------------------


def test_start_and_shadow_versions() -> None:
    slot = ModelKey("k", PipelineConfig(model="logreg", shadow="hoeffding-tree"))
    assert slot.champion_version == "v1.0" and slot.challenger_version == "v2.0"
    assert slot.book.lineage["v1.0"] == {"version": "v1.0", "parent": None, "spec": "logreg", "trigger": "start", "events_seen": 0}
    assert slot.book.lineage["v2.0"]["spec"] == "hoeffding-tree" and slot.book.lineage["v2.0"]["trigger"] == "shadow"
    assert ModelKey("k", PipelineConfig(shadow="none")).challenger is None


def test_promotion_swaps_champion_and_challenger_and_keeps_the_old_champion_as_shadow() -> None:
    config = PipelineConfig(model="logreg", shadow="hoeffding-tree", drift="none",
                            min_sample=500)
    slot = ModelKey("k", config)
    old_champion, old_challenger = slot.champion, slot.challenger
    promote = None
    for e in generate("agrawal", 3000, seed=7):
        for d in slot.learn(e["x"], e["y"], e["ts"]):
            if d.action == "promote":
                promote = d
                break
        if promote:
            break
    assert promote is not None, "the tree should beat logreg on Agrawal"
    assert promote.trigger == "comparator"
    assert promote.champion_version == "v1.0" and promote.challenger_version == "v2.0"
    assert promote.evidence["p_value"] < 0.01 and promote.evidence["test"] == DiscordantPairsTest(alpha=0.01).evidence()["test"]
    assert promote.evidence["challenger_wins"] > promote.evidence["champion_wins"] and promote.evidence["reason"] == "better"
    assert promote.evidence["pairs"] >= 500 and promote.arm == "challenger" 
    assert promote.events_seen == slot.events_seen and promote.decision_id == f"k:{slot.events_seen}:comparator:promote"
    assert slot.champion is old_challenger and slot.challenger is old_champion
    assert slot.champion_version == "v2.0" and slot.challenger_version == "v1.0"
    assert slot.champion.spec.name == "hoeffding-tree"
    assert slot.policy.promotions == 1 and slot.summary()["promotions"] == 1
    assert slot.policy.experiment.pairs == 0  # a new comparison starts
    # both keep learning afterwards
    learned = (slot.champion.learned, slot.challenger.learned)
    slot.learn({"salary": 1.0}, True, 0)
    assert (slot.champion.learned, slot.challenger.learned) == (learned[0] + 1, learned[1] + 1)


def test_a_challenger_that_stays_worse_is_dropped() -> None:
    config = PipelineConfig(model="hoeffding-tree", shadow="logreg", drift="none",
                            min_sample=200, drop_budget=1000)
    slot = ModelKey("k", config)
    decisions = run_slot(slot, generate("agrawal", 1500, seed=7))
    drops = [d for d in decisions if d.action == "drop"]
    assert len(drops) == 1 and 200 <= drops[0].events_seen <= 1000 and drops[0].challenger_version == "v2.0"
    assert drops[0].evidence["reason"] == "worse" and drops[0].evidence["p_value_worse"] < 0.01
    assert slot.challenger is None and slot.policy.drops == 1 and slot.champion_version == "v1.0"
    assert not any(d.action == "promote" for d in decisions)


# -- drift ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agrawal_drift() -> list[dict]:
    return list(generate("agrawal", 40_000, seed=7, drift_at=20_000))


@pytest.fixture(scope="module")
def logreg_vs_tree(agrawal_drift):
    slot = ModelKey("default", PipelineConfig(model="logreg", shadow="hoeffding-tree"))
    return slot, run_slot(slot, agrawal_drift)


def test_agrawal_abrupt_drift_with_logreg_champion_and_tree_shadow(logreg_vs_tree) -> None:
    slot, decisions = logreg_vs_tree
    drift = [d for d in decisions if d.trigger == "drift"]
    assert drift, "no drift decision"
    assert drift[0].action == "retrain"
    assert 20_000 < drift[0].events_seen <= 21_500
    assert not [d for d in drift if 5_000 <= d.events_seen < 20_000]
    assert any(d.action == "promote" for d in decisions)
    assert slot.champion.spec.name == "hoeffding-tree"
    for d in decisions:
        assert d.action in ACTIONS and d.trigger in TRIGGERS and d.model_key == "default"
    assert len({d.decision_id for d in decisions}) == len(decisions)
    assert [d.events_seen for d in decisions] == sorted(d.events_seen for d in decisions)


def major(version: str) -> int:
    return Version.parse(version).major


def test_drift_retrain_is_the_next_major_with_lineage(logreg_vs_tree) -> None:
    slot, decisions = logreg_vs_tree
    retrain = next(d for d in decisions if d.trigger == "drift")
    champion_then = retrain.champion_version
    born = Version.parse(retrain.challenger_version)
    earlier = [d for d in decisions if d.events_seen < retrain.events_seen]
    highest_before = max(major(v) for d in earlier for v in (d.champion_version, d.challenger_version) if v)
    assert born.minor == 0 and born.major == highest_before + 1
    assert slot.book.lineage[str(born)] == {
        "version": str(born),
        "parent": champion_then,
        "spec": slot.book.lineage[f"v{major(champion_then)}.0"]["spec"],
        "trigger": "drift",
        "events_seen": retrain.events_seen,
    }
    majors = [major(v) for v in slot.book.lineage]
    assert majors == list(range(1, len(majors) + 1))
    assert retrain.evidence["detector"] == "adwin" and retrain.evidence["recent_width"] > 0
    assert slot.policy.retrains == sum(1 for d in decisions if d.action == "retrain")


def test_drift_retrain_without_shadow_starts_a_challenger(agrawal_drift) -> None:
    slot = ModelKey("k", PipelineConfig(model="hoeffding-tree"))
    decisions = run_slot(slot, agrawal_drift[:20_800])
    retrain = next(d for d in decisions if d.trigger == "drift")
    assert retrain.action == "retrain" and major(retrain.champion_version) == 1 and retrain.challenger_version == "v2.0"
    assert 20_000 < retrain.events_seen <= 21_500
    assert slot.book.lineage["v2.0"]["parent"] == retrain.champion_version
    assert slot.book.lineage["v2.0"]["trigger"] == "drift"
    assert slot.challenger is not None and slot.challenger.spec.name == "hoeffding-tree"


def test_on_drift_reset_replaces_the_champion(agrawal_drift) -> None:
    slot = ModelKey("k", PipelineConfig(model="hoeffding-tree", on_drift="reset"))
    old = slot.champion
    decisions = run_slot(slot, agrawal_drift[:23_000])
    reset = next(d for d in decisions if d.trigger == "drift")
    assert reset.action == "reset"
    assert 20_000 < reset.events_seen <= 21_500
    assert major(reset.evidence["replaced"]) == 1 and reset.challenger_version is None
    assert slot.champion is not old and slot.champion.version.major == 2
    assert reset.champion_version == "v2.0"
    assert slot.book.lineage["v2.0"]["parent"] == reset.evidence["replaced"]
    assert slot.book.lineage["v2.0"]["trigger"] == "drift" and slot.book.lineage["v2.0"]["spec"] == "hoeffding-tree"
    assert slot.champion.learned == slot.events_seen - reset.events_seen
    assert slot.policy.resets == 1 and slot.policy.retrains == 1 and slot.challenger is None


def test_on_drift_reset_after_a_promotion_keeps_the_champion_spec(agrawal_drift) -> None:
    slot = ModelKey("k", PipelineConfig(model="logreg", shadow="hoeffding-tree", on_drift="reset"))
    decisions = run_slot(slot, agrawal_drift[:23_000])
    promote = next(d for d in decisions if d.action == "promote")
    reset = next(d for d in decisions if d.action == "reset")
    assert promote.events_seen < reset.events_seen
    replaced = reset.evidence["replaced"]
    assert slot.book.lineage[f"v{major(replaced)}.0"]["spec"] == "hoeffding-tree"
    assert slot.book.lineage[f"v{major(reset.champion_version)}.0"]["spec"] == "hoeffding-tree"
    assert slot.champion.spec.name == "hoeffding-tree"


def test_no_drift_handling_means_no_drift_decisions(agrawal_drift) -> None:
    slot = ModelKey("k", PipelineConfig(model="hoeffding-tree", drift="none"))
    assert slot.policy.detector is None
    assert run_slot(slot, agrawal_drift[18_000:24_000]) == []


# -- triggers -------------------------------------------------------------------


def test_volume_trigger_retrains_with_its_name() -> None:
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none", min_sample=300,
                                        triggers=TriggerSettings(volume_every=300)))
    decisions = run_slot(slot, generate("agrawal", 1000, seed=1))
    assert [(d.events_seen, d.action, d.trigger) for d in decisions] == [(300, "retrain", "volume"), (600, "retrain", "volume"), (900, "retrain", "volume")]
    assert [d.challenger_version for d in decisions] == ["v2.0", "v3.0", "v4.0"]
    assert decisions[1].evidence["replaced_challenger"] == "v2.0"
    assert slot.book.lineage["v3.0"]["trigger"] == "volume" and slot.book.lineage["v3.0"]["parent"] == "v1.0"


def test_time_trigger_uses_event_time() -> None:
    # generated events are 100 ms apart: every 30 s of event time is every 300 events
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none", min_sample=300, triggers=TriggerSettings(every_s=30)))
    decisions = run_slot(slot, generate("agrawal", 1000, seed=1))
    assert [(d.events_seen, d.trigger) for d in decisions] == [(301, "time"), (601, "time"), (901, "time")]
    assert decisions[0].ts == generate_ts(300)


def test_a_trigger_faster_than_min_sample_lets_the_running_comparison_finish() -> None:
    # every 300 events, but the challenger's test needs 1,000 pairs: firings in between are deferred
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none", triggers=TriggerSettings(every_s=30)))
    decisions = run_slot(slot, generate("agrawal", 2000, seed=1))
    assert [(d.events_seen, d.action) for d in decisions] == [(301, "retrain"), (1501, "retrain")]
    assert slot.summary()["deferred_triggers"] == 4 and slot.policy.experiment.pairs == 499


def generate_ts(i: int) -> int:
    from stream_cd.simulate.datasets import START_TS, STEP_MS

    return START_TS + i * STEP_MS


def test_performance_trigger_fires_when_accuracy_is_low() -> None:
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none",
                                         triggers=TriggerSettings(performance_below=0.99, performance_window=200)))
    decisions = run_slot(slot, generate("agrawal", 1000, seed=1))
    assert decisions and all(d.action == "retrain" and d.trigger == "performance" for d in decisions)
    assert decisions[0].events_seen >= 200
    never = ModelKey("k", PipelineConfig(model="logreg", drift="none",
                                          triggers=TriggerSettings(performance_below=0.01, performance_window=200)))
    assert run_slot(never, generate("agrawal", 1000, seed=1)) == []


def test_volume_trigger_counts_labeled_events_only() -> None:
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none", min_sample=100,
                                        triggers=TriggerSettings(volume_every=100)))
    fired_at = []
    for e in generate("agrawal", 400, seed=7):
        slot.serve(e["x"], e["ts"])  # a prediction request for every labeled event
        if slot.learn(e["x"], e["y"], e["ts"]):
            fired_at.append(slot.learned)
    assert fired_at == [100, 200, 300, 400]


def test_prediction_requests_are_served_by_the_champion_and_not_learned() -> None:
    slot = ModelKey("k", EXACT)
    slot.learn({"a": 1.0}, True, 0)
    exposure, decisions = slot.serve({"a": 1.0}, 0)
    assert exposure.served is True and decisions == [] and slot.predict({"a": 1.0}) is True
    assert slot.learned == 1 and slot.events_seen == 2 and slot.champion.learned == 1
    assert len(slot.exposures) == 0  # a request without an id waits for no feedback


def test_a_number_where_a_key_had_a_string_is_rejected_even_when_the_event_is_all_numbers() -> None:
    from stream_cd.errors import InvalidEvent

    slot = ModelKey("k", PipelineConfig(model="hoeffding-tree", drift="none"))
    slot.learn({"colour": "red", "size": 1.0}, True, ts=0)
    slot.learn({"size": 2.0}, False, ts=0, numeric=True)  # known as a number: passes on its names
    with pytest.raises(InvalidEvent, match="feature 'colour' is 3.0, a number, but earlier events"):
        slot.learn({"colour": 3.0, "size": 2.0}, True, ts=0, numeric=True)
    assert slot.learned == 2
