"""Record database: key stability, overlay precedence, corruption tolerance, staleness, merge/prune."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from db_helpers import TARGET, key, record

from rnnc.autotune_db import Database, Record, RecordError, RecordKey, RecordWarning, append, environment, read_file


def quiet_db(tmp_path: Path, **kw) -> Database:
    return Database(overlay=tmp_path / "overlay", shipped=kw.pop("shipped", tmp_path / "shipped"), **kw)


def test_key_is_stable_and_order_independent() -> None:
    a = RecordKey("abc123", (("seq_len", 64), ("batch", 4)), "float32", TARGET, "c")
    b = RecordKey("abc123", (("batch", 4), ("seq_len", 64)), "float32", TARGET, "c")
    assert a == b and a.id == b.id
    # the id is persisted in files and printed by the CLI: changing its recipe orphans every record
    assert a.id == "14a361bf647576ca"
    assert RecordKey("abc123", (("seq_len", 64), ("batch", 8)), "float32", TARGET, "c").id != a.id
    assert RecordKey.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_record_round_trip_and_validation() -> None:
    r = record(time_s=2e-3, max_error=1e-6, label="lstm H=32")
    assert Record.from_dict(json.loads(r.to_json())) == r
    with pytest.raises(RecordError):
        Record(key(), {"params": {}}, None)  # neither measured nor estimated
    with pytest.raises(RecordError):
        Record.from_dict({"key": key().to_dict(), "schedule": "nope", "time_s": 1.0})


def test_overlay_is_read_before_shipped(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    Database(overlay=shipped).add([record(time_s=1e-4, threads=2)])  # faster, but shipped
    db = quiet_db(tmp_path)
    assert db.lookup(key()).schedule["params"] == {"threads": 2}
    db.add([record(time_s=5e-4, threads=1), record(time_s=9e-4, threads=4)])
    hit = db.lookup(key())
    assert hit.schedule["params"] == {"threads": 1} and hit.time_s == 5e-4
    assert db.lookup(key(batch=99)) is None


def test_corrupted_and_truncated_lines_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    db = quiet_db(tmp_path)
    db.add([record(key(f"layer{i}")) for i in range(4)])
    path = db.overlay_file(key())
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-7] + "garbage"  # line 3 corrupted in the middle
    path.write_text("\n".join(lines) + "\n" + lines[4][: len(lines[4]) // 2])  # and a truncated tail
    with pytest.warns(RecordWarning) as caught:
        scan = db.scan()
    messages = [str(w.message) for w in caught]
    assert any(f"{path}:3" in m and "corrupted" in m for m in messages)
    assert any(f"{path}:6" in m and "truncated" in m for m in messages)
    assert sorted(e.record.key.layer for e in scan.usable()) == ["layer0", "layer2", "layer3"]
    # the next append starts on a fresh line instead of gluing onto the truncated one
    db.add([record(key("after"))])
    with pytest.warns(RecordWarning):
        assert db.lookup(key("after")) is not None


def test_stale_versions_and_hardware_are_never_used_silently(tmp_path: Path) -> None:
    old = dict(environment(), rnnc="0.0.1")
    Database(overlay=tmp_path / "overlay", versions=old).add([record()])
    db = quiet_db(tmp_path)
    with pytest.warns(RecordWarning, match=r"other library versions \(rnnc 0.0.1 -> "):
        assert db.lookup(key()) is None
    # a torch upgrade does not invalidate C-backend records, an onnxruntime one does invalidate onnx ones
    db2 = quiet_db(tmp_path, versions=dict(environment(), rnnc="0.0.1", torch="0.0"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert db2.lookup(key()) is not None
    other_hw = Record(key(layer="hw"), record().schedule, 1e-3, target_fingerprint="0" * 16,
                      host={"cpu": "Other CPU"})
    db.add([other_hw])
    with pytest.warns(RecordWarning) as caught:
        assert db.lookup(key(layer="hw")) is None
    assert any("different cpu/x86-avx512 hardware (Other CPU)" in str(w.message) for w in caught)


def test_append_refuses_a_file_of_other_versions(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    append(path, [record()], dict(environment(), rnnc="0.0.1"))
    with pytest.raises(RecordError, match="other library versions"):
        append(path, [record()])
    contents = read_file(path)
    assert contents.header["versions"]["rnnc"] == "0.0.1" and len(contents.records) == 1


def test_merge_keeps_the_best_verified_record_and_drops_stale(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    append(a, [record(time_s=3e-3, threads=1), record(key("x"), time_s=1.0)])
    append(b, [record(time_s=1e-3, threads=2), record(key("y"), time_s=1.0, verified=False)])
    append(c, [record(key("z"), time_s=1e-9)], dict(environment(), rnnc="0.0.1"))
    db = quiet_db(tmp_path)
    report = db.merge([a, b, c], tmp_path / "merged.jsonl")
    assert report["kept"] == 2 and len(report["dropped_stale"]) == 2
    merged = read_file(tmp_path / "merged.jsonl")
    best = {r.key.layer: r for _, r in merged.records}
    assert set(best) == {"abc123", "x"} and best["abc123"].schedule["params"] == {"threads": 2}
    assert merged.header["versions"] == environment()


def test_prune_drops_stale_records_and_corrupt_lines(tmp_path: Path) -> None:
    Database(overlay=tmp_path / "overlay", versions=dict(environment(), rnnc="0.0.1")).add([record()])
    db = quiet_db(tmp_path)
    db.add([record(time_s=2e-3), record(time_s=1e-3, threads=3)])
    fresh = db.overlay_file(key())
    fresh.write_text(fresh.read_text() + "{not json\n")
    dry = db.prune(dry_run=True)
    assert dry["removed_records"] == 1 and dry["removed_lines"] == 1 and len(db.files()) == 2
    report = db.prune(dedupe=True)
    assert report["removed_records"] == 2 and report["removed_lines"] == 1
    assert [p.name for _, p in db.files()] == [fresh.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan = db.scan()
    assert [e.record.schedule["params"] for e in scan.entries] == [{"threads": 3}]


def test_shipped_records_are_well_formed() -> None:
    from rnnc.autotune_db import SHIPPED_DIR

    files = sorted(SHIPPED_DIR.glob("*.jsonl"))
    assert files, "the package ships at least one record file"
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            contents = read_file(path)
        assert contents.header and contents.records
        assert all(r.verified and r.key.target.replace("/", "-") in path.name for _, r in contents.records)
