"""Recorded streams on disk: CSV rows as events, JSONL lines as they are."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from stream_cd.errors import ConfigError
from stream_cd.events import decode_event
from stream_cd.sources import csv_events, jsonl_events, read_events


def test_csv_rows_become_events(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "key,id,ts,session,source,age,colour,member,score,y\n"
        "shop,e1,1732600000000,s1,web,31,red,true,0.5,true\n"
        "shop,e2,1732600000100,,,,blue,FALSE,-2,false\n"
        "shop,e3,,,,40,green,,,\n",
        encoding="utf-8",
    )
    raws = list(read_events(path))
    assert [orjson.loads(r) for r in raws] == [
        {"key": "shop", "id": "e1", "ts": 1732600000000, "session": "s1", "source": "web",
         "x": {"age": 31, "colour": "red", "member": True, "score": 0.5}, "y": True},
        {"key": "shop", "id": "e2", "ts": 1732600000100, "x": {"colour": "blue", "member": False, "score": -2}, "y": False},
        {"key": "shop", "id": "e3", "x": {"age": 40, "colour": "green"}},
    ]
    events = [decode_event(r) for r in raws]
    assert events[0].session == "s1" and events[0].source == "web" and events[0].ts == 1732600000000
    assert not events[2].labeled


def test_csv_label_column_can_be_named() -> None:
    rows = io.StringIO("a,target\n1,cat\n2,dog\n")
    assert [orjson.loads(r) for r in csv_events(rows, label="target")] == [
        {"x": {"a": 1}, "y": "cat"},
        {"x": {"a": 2}, "y": "dog"},
    ]


def test_jsonl_lines_pass_byte_for_byte_including_invalid_ones(tmp_path: Path) -> None:
    lines = [
        b'{"x": {"a": 1}, "y": true}',
        b'{"x":{"a":2.50},   "y":false}',
        b"not json at all",
        b'{"x": [1]}',
        b"\xff\xfe",
        b'{"x": {"a": 1e999}}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines[:3]) + b"\r\n\n   \n" + b"\n".join(lines[3:]) + b"\n")
    assert list(read_events(path)) == lines
    assert list(jsonl_events(io.BytesIO(b"a\r\nb"))) == [b"a", b"b"]


@pytest.mark.parametrize("suffix", [".json", ".ndjson", ".JSONL"])
def test_other_jsonl_suffixes(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"e{suffix}"
    path.write_bytes(b'{"x": {}}\n')
    assert list(read_events(path)) == [b'{"x": {}}']


def test_unknown_suffix_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ConfigError) as info:
        list(read_events(path))
    assert str(path) in str(info.value) and "'.parquet'" in str(info.value)


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(ConfigError) as info:
        list(read_events(path))
    assert str(path) in str(info.value) and "no such file" in str(info.value)
    with pytest.raises(ConfigError, match="no such file"):
        list(read_events(tmp_path))  # a directory is not a file of events


def test_a_bad_ts_cell_is_not_a_crash() -> None:
    from stream_cd.errors import InvalidEvent

    rows = io.StringIO("ts,a,y\nnoon,1,true\n")
    try:
        raws = list(csv_events(rows))
    except ConfigError:
        return
    with pytest.raises(InvalidEvent, match="ts"):
        decode_event(raws[0])
