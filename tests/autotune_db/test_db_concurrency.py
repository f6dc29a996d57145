"""Two processes appending to one database at once lose nothing and never interleave bytes."""

from __future__ import annotations

import multiprocessing as mp
import warnings
from pathlib import Path

from db_helpers import key, record

from rnnc.autotune_db import Database, read_file

N = 150


def _writer(overlay: str, tag: str) -> None:
    db = Database(overlay=overlay, shipped=None)
    for i in range(N):  # one append per record: the most contention
        db.add([record(key(f"{tag}{i}"), time_s=1e-3 + i * 1e-6, label="x" * 3000)])


def test_two_processes_append_concurrently(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")  # no inherited locks or file offsets
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        contents = read_file(files[0])
    assert contents.header is not None and not contents.problems
    assert sorted(r.key.layer for _, r in contents.records) == sorted(f"{t}{i}" for t in "ab" for i in range(N))
    assert files[0].read_text().count('"rnnc_db"') == 1
