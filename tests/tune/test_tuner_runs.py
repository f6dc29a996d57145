"""Real tuning runs on this CPU (C backend) and compile-only GPU runs (CUDA, estimated)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from tune_helpers import small, tmp_db

import rnnc
from rnnc.autotune_db import Record
from rnnc.tolerances import tolerance
from rnnc.tune import Tuner, lookup_schedule
from rnnc.tune.api import lookup_record
from rnnc.tune.evaluate import FAILED, OK
from rnnc.tune.protocol import ADAPTERS


def test_tiny_real_tuning_run_records_verified_measurements(tmp_path: Path) -> None:
    db = tmp_db(tmp_path)
    layer = small("lstm")
    report = Tuner("cpu/host", "c", db=db, max_candidates=2, repeats=3, progress=False).tune([layer])
    lr = report.layers[0]
    assert report.ok and [t["status"] for t in lr.trials] == [OK, OK]
    # the two candidates are really different kernels (threads 2 vs 1 on this 2-core machine)
    assert len({t["identity"] for t in lr.trials}) == 2
    records = [e.record for e in db.scan().entries]
    assert len(records) == 2 and all(r.verified and not r.estimated and r.time_s > 0 for r in records)
    assert all(r.max_error <= tolerance("float32", "c")[0] * 10 for r in records)
    assert lr.best == min(records, key=lambda r: r.time_s)
    assert lr.best.key == layer.key("cpu/host", "c") and lr.best.schedule["source"] == "tuned"
    # the database-first lookup that compilation uses finds it, with or without a sequence length
    sched = lookup_schedule(layer.cell, "cpu/host", "c", batch=2, seq_len=16, db=db)
    assert sched is not None and dict(sched.params) == lr.best.schedule["params"]
    assert lookup_record(layer.cell, "cpu/host", "c", batch=2, db=db) == lr.best
    assert lookup_schedule(layer.cell, "cpu/host", "c", batch=3, db=db) is None


def test_resume_skips_measured_candidates_and_budget_stops(tmp_path: Path) -> None:
    db = tmp_db(tmp_path)
    layer = small("mingru", hidden=64)
    first = Tuner("cpu/host", "c", db=db, max_candidates=1, progress=False).tune([layer]).layers[0]
    assert len(first.trials) == 1
    again = Tuner("cpu/host", "c", db=db, max_candidates=2, progress=False).tune([layer]).layers[0]
    assert again.resumed == 1 and len(again.trials) == 1  # only the new candidate ran
    assert len(db.scan().entries) == 2
    fresh = tmp_db(tmp_path / "other")
    out = Tuner("cpu/host", "c", db=fresh, max_candidates=2, time_budget=1e-9, progress=False).tune([layer])
    assert not out.ok and out.layers[0].trials == [] and "time budget" in out.layers[0].stopped
    assert fresh.scan().entries == []


def test_only_verified_kernels_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnc.tune.adapt_c import ADAPTER as C
    from rnnc.tune.protocol import Built

    class Wrong:
        name, tolerance = "wrong", "c"
        mode, problem, rendered = C.mode, C.problem, C.rendered

        def build(self, layer, schedule, target):
            good = C.build(layer, schedule, target)
            return Built(lambda *xs: tuple(y + 1e-2 for y in good.run(*xs)), good.identity, good.resources)

    mod = types.ModuleType("rnnc_test_wrong_adapter")
    mod.ADAPTER = Wrong()
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(ADAPTERS, "wrong", mod.__name__)
    db = tmp_db(tmp_path)
    report = Tuner("cpu/host", "wrong", db=db, max_candidates=2, progress=False).tune([small("gru")])
    trials = report.layers[0].trials
    assert trials and all(t["status"] == FAILED and "IR interpreter" in t["reason"] for t in trials)
    assert not report.ok and db.scan().entries == []
    assert "no verified kernel" in report.text()


def test_gpu_target_without_gpu_is_compile_only_and_estimated(tmp_path: Path) -> None:
    db = tmp_db(tmp_path)
    report = Tuner("nvidia/h100-sxm", "cuda", db=db, max_candidates=1, progress=False).tune([small("mingru")])
    rec = report.layers[0].best
    assert isinstance(rec, Record) and rec.estimated and rec.time_s is None and rec.estimate_s > 0
    assert "knobs" in rec.resources
    from rnnc.backends.cstyle.build import nvcc_path

    if nvcc_path():  # resources come from ptxas when nvcc is installed (it is on the project's machines)
        assert rec.resources["ptxas"]["arch"] == "sm_90" and rec.resources["ptxas"]["registers"] > 0


def test_public_api_traces_a_model(tmp_path: Path) -> None:
    from rnnc.kernels import CELLS

    model = CELLS["elman"].load_module_class()(8, 32)
    report = rnnc.tune(model, torch.randn(2, 5, 8), target="cpu/host", batch=2, seq_len=8, max_candidates=1,
                       db=tmp_db(tmp_path))
    assert report.ok and report.layers[0].label == "elman I=8 H=32 B=2 T=8"
    assert callable(rnnc.tune) and rnnc.tune.Tuner is Tuner


def test_impossible_pairings_fail_early_with_a_sentence() -> None:
    from rnnc.errors import UnsupportedError, UserInputError

    with pytest.raises(UnsupportedError, match="GPU"):
        Tuner("nvidia/t4", "c")
    with pytest.raises(UnsupportedError, match="arm64"):
        Tuner("cpu/arm64-neon", "c")
    with pytest.raises(UserInputError, match="cannot be tuned"):
        Tuner("cpu/host", "onnx")


def test_a_first_pass_fluke_is_confirmed_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted timings: in the first pass a variant looks 2x faster than the untuned default
    (a fluke), in the interleaved confirmation rounds the default is fastest.  The record that
    compile uses is the default's, with its confirmed time; every finalist keeps its first time
    as ``first_pass_s``, and the confirmation ran in rounds (default, variants, default, ...)."""
    import rnnc.tune.tuner as tuner_mod

    first = iter([10.0, 5.0, 8.0, 9.0])  # default, fluke, two others (first pass, in order)
    calls: list[str] = []

    def fake_evaluate(layer, schedule_json, target_tag, backend, repeats, expected=None, seen=frozenset()):
        from rnnc.constraints import Schedule

        params = dict(Schedule.from_json(schedule_json).params)
        name = "default" if not params else str(sorted(params.items()))
        calls.append(name)
        if len(calls) <= 4:
            t = next(first)
        else:  # confirmation: the default 6, everything else 9
            t = 6.0 if name == "default" else 9.0
        return {"status": OK, "time_s": t, "identity": name, "resources": {}, "host": {}, "max_error": 0.0,
                "estimate_s": None, "params": params, "reason": "", "seconds": 0.0}

    monkeypatch.setattr(tuner_mod, "evaluate", fake_evaluate)
    db = tmp_db(tmp_path)
    layer = small("gru")
    lr = Tuner("cpu/host", "c", db=db, max_candidates=4, progress=False).tune([layer]).layers[0]
    assert [t["status"] for t in lr.trials] == [OK] * 4
    assert lr.best.schedule["params"] == {} and lr.best.time_s == 6.0  # the untuned default
    confirmed = [t for t in lr.trials if "first_pass_s" in t]
    assert len(confirmed) == 4 and {t["first_pass_s"] for t in confirmed} == {10.0, 5.0, 8.0, 9.0}
    rounds = calls[4:]  # two rounds over the four finalists, the second in rotated order
    assert len(rounds) == 2 * 4 and rounds[4:] == rounds[1:4] + rounds[:1] and "default" in rounds[:4]


def test_an_unconfirmed_candidate_cannot_win_on_its_first_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five candidates; the three fastest and the default are confirmed slower than the fifth's
    first time, so the fifth is confirmed as well before anything is recorded."""
    import rnnc.tune.tuner as tuner_mod

    first = iter([10.0, 5.0, 6.0, 7.0, 7.5])
    seen: list[str] = []

    def fake_evaluate(layer, schedule_json, target_tag, backend, repeats, expected=None, **kw):
        from rnnc.constraints import Schedule

        name = str(sorted(dict(Schedule.from_json(schedule_json).params).items()))  # "[]": the default
        seen.append(name)
        t = next(first) if len(seen) <= 5 else (8.0 if name == "[]" else 9.0)
        return {"status": OK, "time_s": t, "identity": name, "resources": {}, "host": {}, "max_error": 0.0,
                "estimate_s": None, "params": {}, "reason": "", "seconds": 0.0}

    monkeypatch.setattr(tuner_mod, "evaluate", fake_evaluate)
    layer = small("gru")
    lr = Tuner("cpu/host", "c", db=tmp_db(tmp_path), max_candidates=5, progress=False).tune([layer]).layers[0]
    assert len(lr.trials) == 5 and all("first_pass_s" in t for t in lr.trials)
    assert lr.best.schedule["params"] == {} and lr.best.time_s == 8.0
    # first pass, the finalists' two rounds, then the fifth beside the default for two rounds
    assert len(seen) == 5 + 2 * 4 + 2 * 2 and seen[-4:].count("[]") == 2


def test_a_candidate_failing_its_second_check_is_not_recorded(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that passed its first check and fails the confirmation's (flaky: a race, say) is
    dropped: its failed outcome is in the report, no record of it is written, the default wins."""
    import rnnc.tune.tuner as tuner_mod

    first = iter([10.0, 5.0, 8.0])
    calls: list[str] = []

    def fake_evaluate(layer, schedule_json, target_tag, backend, repeats, expected=None, **kw):
        from rnnc.constraints import Schedule

        name = str(sorted(dict(Schedule.from_json(schedule_json).params).items()))
        calls.append(name)
        status, t = (OK, next(first)) if len(calls) <= 3 else (OK, 7.0 if name == "[]" else 9.0)
        if len(calls) > 3 and name == calls[1]:  # the first pass's fastest fails now
            status = FAILED
        return {"status": status, "time_s": t if status == OK else None, "identity": name, "resources": {},
                "host": {}, "max_error": 0.0, "estimate_s": None, "params": {}, "seconds": 0.0,
                "reason": "" if status == OK else "wrong result vs the IR interpreter"}

    monkeypatch.setattr(tuner_mod, "evaluate", fake_evaluate)
    db = tmp_db(tmp_path)
    lr = Tuner("cpu/host", "c", db=db, max_candidates=3, progress=False).tune([small("gru")]).layers[0]
    assert [t["status"] for t in lr.trials] == [OK, OK, OK, FAILED]
    recorded = {str(sorted(e.record.schedule["params"].items())) for e in db.scan().entries}
    assert calls[1] not in recorded and len(recorded) == 2
    assert lr.best.schedule["params"] == {} and lr.best.time_s == 7.0
