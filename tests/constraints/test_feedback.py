"""The one compiler-feedback loop (``rnnc.constraints.feedback.refine``) with made-up policies:
a fake "compiler" whose register need the model under-predicts by a fixed amount, so the loop
must learn that amount as calibration; stop reasons, infeasible solves and the history."""

from __future__ import annotations

import pytest

from rnnc.constraints.feedback import Stop, Verdict, refine, refine_exhausted
from rnnc.errors import InfeasibleError

HIDDEN_NEED = 24  # registers the fake compiler needs beyond the model's prediction


def _policy(limit: int = 255):
    """solve: predicts 100 + overhead registers (infeasible past ``limit``); build: the compiler
    needs 124; judge: spills when the prediction (the cap) is below the need."""
    built = []

    def solve(cal):
        pred = 100 + cal["overhead"]
        if pred > limit:
            raise InfeasibleError(f"{pred} registers > {limit}")
        return pred

    def build(pred):
        built.append(pred)
        return {"cap": pred, "need": 100 + HIDDEN_NEED}

    def judge(cal, pred, res):
        spill = max(res["need"] - res["cap"], 0)
        record = {"predicted": pred, "spilled": spill}
        if spill:
            return Verdict(False, calibration={**cal, "overhead": cal["overhead"] + spill}, record=record)
        return Verdict(True, converged=res["cap"] - res["need"] <= 8,
                       calibration={**cal, "overhead": cal["overhead"] - (res["cap"] - res["need"])}, record=record)

    return solve, build, judge, built


def test_the_loop_learns_the_missing_overhead_and_keeps_the_history():
    solve, build, judge, built = _policy()
    fit = refine(solve, build, judge, {"overhead": 0}, max_rounds=5)
    assert fit.converged and fit.note == ""
    assert fit.best == (124, {"cap": 124, "need": 124}) and fit.calibration == {"overhead": HIDDEN_NEED}
    assert [r["overhead"] for r in fit.rounds] == [0, HIDDEN_NEED]  # the calibration each round solved with
    assert [r["spilled"] for r in fit.rounds] == [HIDDEN_NEED, 0] and built == [100, 124]


def test_an_overestimate_is_acceptable_and_pulled_back():
    solve, build, judge, _ = _policy()
    fit = refine(solve, build, judge, {"overhead": 64}, max_rounds=5)
    assert fit.converged and [r["predicted"] for r in fit.rounds] == [164, 124]


def test_rounds_run_out_with_the_last_build_and_no_best():
    solve, build, judge, _ = _policy()
    fit = refine(solve, build, judge, {"overhead": 0}, max_rounds=1)
    assert not fit.converged and fit.best is None and fit.last == (100, {"cap": 100, "need": 124})
    assert fit.note == refine_exhausted(1) and fit.exhausted and fit.calibration == {"overhead": HIDDEN_NEED}


def test_an_infeasible_solve_is_reraised_or_recalibrated():
    solve, build, judge, _ = _policy(limit=110)
    with pytest.raises(InfeasibleError, match="124 registers > 110"):
        refine(solve, build, judge, {"overhead": 0}, max_rounds=5)

    seen = []

    def relax(cal, exc, state):  # the policy may answer with a new calibration
        seen.append((dict(cal), len(state.rounds), state.best))
        return {"overhead": 0, "relaxed": True}

    solve2, build2, judge2, _ = _policy(limit=300)
    fit = refine(lambda cal: solve2(cal) if cal.get("relaxed") else (_ for _ in ()).throw(InfeasibleError("no")),
                 build2, judge2, {"overhead": 0}, max_rounds=5, infeasible=relax)
    assert seen == [({"overhead": 0}, 0, None)] and fit.converged


def test_a_policy_stops_the_loop_with_its_reason():
    solve, _, judge, _ = _policy()

    def build(pred):
        raise Stop(f"cannot render {pred}")

    fit = refine(solve, build, judge, {"overhead": 0}, max_rounds=5)
    assert fit.note == "cannot render 100" and not fit.exhausted and fit.best is None and fit.last is None
    assert fit.rounds == []
