"""The tolerance table and the errors observed beside it (``tools/observed_tolerances.py``)."""

from __future__ import annotations

import json

import pytest
import torch

from rnnc import tolerances
from rnnc.tolerances import OBSERVED, TOLERANCES, assert_close


def test_every_row_has_its_observed_error_and_none_is_dead():
    assert set(OBSERVED) == set(TOLERANCES), "rerun tools/observed_tolerances.py after changing the table"
    for row, seen in OBSERVED.items():
        if seen is None:  # only rows whose tests need a GPU may go unexercised on a CPU machine
            assert row[1] == "cuda", f"tolerance row {row} is used by no test: remove it or test it"
            continue
        largest, share, count = seen
        assert count >= 1 and 0.0 <= share <= 1.0 and largest >= 0.0  # within its row by construction


def test_passing_comparisons_are_logged_failing_ones_are_not(tmp_path, monkeypatch):
    log = tmp_path / "tol.jsonl"
    monkeypatch.setenv(tolerances.LOG_ENV, str(log))
    assert_close(torch.ones(3) + 1e-6, torch.ones(3), "float32", "interp")
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_close(torch.ones(3) + 1.0, torch.ones(3), "float32", "interp")
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["row"] == ["float32", "interp"]
    assert lines[0]["abs"] == pytest.approx(1e-6, rel=0.2) and 0 < lines[0]["share"] < 1
