"""Signed state and key rotation: sign with the newest key, accept any listed one."""

from __future__ import annotations

import pytest

from stream_cd.embedded import DirectoryStore, EmbeddedTransport
from stream_cd.errors import StateError
from stream_cd.pipeline import Pipeline
from stream_cd.state.signing import (
    STATE_KEY_ENV,
    dump_state,
    load_state,
    signed_by,
    state_key_from_env,
)
from stream_cd.transport import Topics
from stream_cd.worker import run_worker

OLD = "old-state-key-0123456789abcdef"
NEW = "new-state-key-0123456789abcdef"
EVENTS = [b'{"x": {"a": %d}, "y": %s}' % (i, b"true" if i % 3 else b"false") for i in range(100)]


def _keys(monkeypatch, value: str) -> tuple[bytes, ...]:
    monkeypatch.setenv(STATE_KEY_ENV, value)
    keys = state_key_from_env()
    assert keys is not None
    return keys


def test_state_signed_with_the_old_key_loads_under_new_and_old_and_is_refused_under_new_alone(monkeypatch) -> None:
    blob = dump_state({"learned": 42}, _keys(monkeypatch, OLD), "model:a")
    assert load_state(blob, _keys(monkeypatch, f"{NEW},{OLD}"), "model key 'a'", "model:a") == {"learned": 42}
    with pytest.raises(StateError, match="refused checkpoint of model key 'a': its signature does not match"):
        load_state(blob, _keys(monkeypatch, NEW), "model key 'a'", "model:a")


def test_new_state_is_signed_with_the_first_key_only(monkeypatch) -> None:
    blob = dump_state([1, 2], _keys(monkeypatch, f"{NEW},{OLD}"), "model:a")
    assert signed_by(blob, _keys(monkeypatch, f"{NEW},{OLD}"), b"model:a") == 1
    assert signed_by(blob, _keys(monkeypatch, f"{OLD},{NEW}"), b"model:a") == 2
    assert signed_by(blob, _keys(monkeypatch, OLD), b"model:a") is None
    assert signed_by(blob, _keys(monkeypatch, f"{NEW},{OLD}"), b"model:b") is None  # bound to its record key
    with pytest.raises(StateError, match=f"signed with none of the 2 keys in {STATE_KEY_ENV}"):
        load_state(blob, _keys(monkeypatch, f"{OLD},{'x' * 16}"), "model key 'a'", "model:a")


@pytest.mark.parametrize(("value", "message"), [
    (f"{NEW},short", f"{STATE_KEY_ENV} key 2 of 2 is 5 characters; use at least 16"),
    (f"{NEW},,{OLD}", f"{STATE_KEY_ENV} key 2 of 3 is 0 characters"),
    (f"{NEW},", f"{STATE_KEY_ENV} key 2 of 2 is 0 characters"),
    ("tiny", f"{STATE_KEY_ENV} is 4 characters; use at least 16"),
])
def test_a_short_key_is_named_by_its_position_and_never_printed(monkeypatch, value, message) -> None:
    monkeypatch.setenv(STATE_KEY_ENV, value)
    with pytest.raises(StateError) as raised:
        state_key_from_env()
    assert message in str(raised.value)
    assert NEW not in str(raised.value) and "short" not in str(raised.value) and "tiny" not in str(raised.value)


def test_spaces_around_keys_are_dropped(monkeypatch) -> None:
    assert _keys(monkeypatch, f" {NEW} , {OLD}\n") == (NEW.encode(), OLD.encode())


def test_a_worker_restores_old_key_state_under_new_and_old_and_starts_afresh_under_new_alone(
    tmp_path, monkeypatch, caplog
) -> None:
    def run(directory, value: str, events: list[bytes]) -> Pipeline:
        pipeline = Pipeline()
        run_worker(EmbeddedTransport(events, store=DirectoryStore(directory)), pipeline, Topics(),
                   state_key=_keys(monkeypatch, value), batch_size=10, commit_every_events=20)
        return pipeline

    for directory in (tmp_path / "rotated", tmp_path / "dropped"):
        run(directory, OLD, EVENTS[:60])
    rotated = run(tmp_path / "rotated", f"{NEW},{OLD}", EVENTS)
    assert rotated.models["default"].learned == 100  # 60 restored, 40 more
    slots = [f.read_bytes() for f in (tmp_path / "rotated").glob("s*%2Fmodel%3Adefault.ckpt")]
    newest = max(slots)[8:]  # each file starts with the store's write sequence
    assert signed_by(newest, _keys(monkeypatch, f"{NEW},{OLD}"), b"model:default") == 1  # re-signed with the new key

    with caplog.at_level("WARNING"):
        dropped = run(tmp_path / "dropped", NEW, EVENTS)
    assert "refused checkpoint of model key 'default'" in caplog.text
    assert "cannot restore model key 'default': no valid checkpoint is left; it starts afresh" in caplog.text
    # nothing of the old run is taken in: the same as a first run over the whole input
    assert dropped.summary() == run(tmp_path / "fresh", NEW, EVENTS).summary()
    assert rotated.summary() == dropped.summary()  # restored and went on: as one uninterrupted run
