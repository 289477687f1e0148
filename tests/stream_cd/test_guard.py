"""Poisoning guards: a flooding source with flipped labels moves the model less with the guard on."""

from __future__ import annotations

import itertools
import random

from river.datasets import synth

from stream_cd.config import PipelineConfig
from stream_cd.learning.guard import SourceCap
from stream_cd.model_key import ModelKey


def _stream(seed: int, n: int, poisoned: bool):
    """Agrawal events from ten honest sources; with ``poisoned``, half of all events come
    from one more source whose labels are flipped."""
    rng = random.Random(seed)
    for x, y in itertools.islice(synth.Agrawal(classification_function=2, seed=seed), n):
        if poisoned and rng.random() < 0.5:
            yield x, not bool(y), "flooder"
        else:
            yield x, bool(y), f"user-{rng.randrange(10)}"


def _clean_accuracy(config: PipelineConfig, poisoned: bool) -> float:
    slot = ModelKey("k", config)
    for x, y, source in _stream(1, 20_000, poisoned):
        slot.learn(x, y, ts=0, source=source)
    probe = list(itertools.islice(synth.Agrawal(classification_function=2, seed=77), 2_000))
    return sum(slot.champion.model.predict_one(x) == bool(y) for x, y in probe) / len(probe)


def test_source_cap_limits_how_far_a_flooding_source_moves_the_model() -> None:
    plain = PipelineConfig(model="hoeffding-tree", drift="none")
    guarded = PipelineConfig(model="hoeffding-tree", drift="none", source_cap=0.1, source_window=1000)
    clean = _clean_accuracy(plain, poisoned=False)
    off = _clean_accuracy(plain, poisoned=True)
    on = _clean_accuracy(guarded, poisoned=True)
    print(f"accuracy on clean data: clean stream {clean:.4f}, poisoned with guard off {off:.4f}, on {on:.4f}")
    assert abs(clean - on) < abs(clean - off)
    assert clean - on < 0.5 * (clean - off)  # it undoes most of the damage


def test_held_back_events_are_counted_in_the_summary() -> None:
    slot = ModelKey("k", PipelineConfig(model="logreg", drift="none", source_cap=0.5, source_window=10))
    for i in range(20):
        slot.learn({"a": float(i)}, i % 2 == 0, ts=0, source="flooder")
    summary = slot.summary()
    assert summary["held_back"] == {"source": 15, "range": 0}
    assert summary["learned"] == 5 and summary["events_seen"] == 20


def test_range_guard_holds_back_far_outliers_only_when_on() -> None:
    events = [({"a": float(i % 50)}, i % 2 == 0) for i in range(500)] + [({"a": 1e9}, True)]
    on = ModelKey("k", PipelineConfig(model="logreg", drift="none", range_guard=3.0))
    off = ModelKey("k", PipelineConfig(model="logreg", drift="none"))
    for x, y in events:
        on.learn(x, y, ts=0)
        off.learn(x, y, ts=0)
    assert on.held_back["range"] == 1 and on.learned == 500
    assert off.held_back["range"] == 0 and off.learned == 501


def _reference_admits(cap: float, window: int, sources: list[str | None]) -> list[bool]:
    """The source cap written out plainly: the source's count in the window of the last
    ``window`` admitted events, with this one in it (and the oldest gone if it was full)."""
    admitted: list[str | None] = []
    decisions = []
    for source in sources:
        window_with_it = admitted[-window + 1:] if window > 1 else []
        ok = source is None or window_with_it.count(source) + 1 <= cap * window
        if ok:
            admitted.append(source)
        decisions.append(ok)
    return decisions


def test_source_cap_keeps_only_the_sources_of_its_window() -> None:
    cap = SourceCap(cap=0.1, window=1000)
    largest = 0
    for i in range(100_000):
        assert cap.admit(f"session-{i}")
        largest = max(largest, len(cap.counts))
    assert largest == 1000 and len(cap.counts) == 1000 and 0 not in cap.counts.values()
    assert set(cap.counts) == {f"session-{i}" for i in range(99_000, 100_000)}


def test_source_cap_decides_as_a_plain_count_over_its_window() -> None:
    rng = random.Random(14)
    # a few flooders, many one-off sessions and events without a source
    sources = [rng.choice(["flood-a", "flood-b", None, f"s{rng.randrange(10**6)}"]) for _ in range(5_000)]
    cap = SourceCap(cap=0.2, window=50)
    decisions = [cap.admit(source) for source in sources]
    assert decisions == _reference_admits(0.2, 50, sources)
    assert 0 < decisions.count(False) < len(decisions)  # the cap did hold some back
    assert len(cap.counts) <= 50


def test_source_cap_sheds_the_zero_counts_of_an_older_checkpoint() -> None:
    cap = SourceCap(cap=0.5, window=4)
    cap.counts.update({f"gone-{i}": 0 for i in range(100)})  # what an older version pickled
    cap.admit("a")
    assert dict(cap.counts) == {"a": 1}


def test_events_the_source_cap_holds_back_do_not_widen_the_range_guard() -> None:
    """A source past its cap cannot stretch the range step by step for a later source to use."""
    key = ModelKey("k", PipelineConfig(model="logreg", drift="none", range_guard=3.0, range_warmup=20,
                                       source_cap=0.5, source_window=40))
    for i in range(40):
        key.learn({"f": float(i % 10)}, i % 2 == 0, ts=i, source="alice" if i % 2 else "bob")
    for i in range(60):  # "mallory" takes her half, then is capped while her values grow 3.9 times each time
        key.learn({"f": 9.0 * 3.9 ** max(0, i - 19)}, True, ts=40 + i, source="mallory")
    assert key.held_back["source"] >= 1 and key.range_guard.high["f"] == 9.0  # held back, they taught it nothing
    assert key.learn({"f": 1e22}, True, ts=100, source="carol") == [] and key.held_back["range"] >= 1
