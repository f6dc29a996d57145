"""Ahead-of-time compilation without a GPU: solver-feasible schedules compile with no spills and
within the device's shared memory; infeasible targets are declined with the solver's reason."""

from __future__ import annotations

import pytest
from triton_cases import program

from rnnc.backends import get_backend
from rnnc.backends.triton import schedule_for
from rnnc.backends.triton.aot import TOLERANCE, allocated, fit_schedule
from rnnc.targets import get

TARGETS = {80: "nvidia/a100-80gb", 90: "nvidia/h100-sxm"}
# lstm H=64 spills at the solver's first choice (4 warps: 168 predicted, 255 + spills compiled);
# fit_schedule feeds that back (min_warps=8) and must end spill-free.
CASES = [("lstm", 16), ("gru", 16), ("elman", 16), ("lstm", 64), ("gru", 64), ("elman", 64)]


@pytest.mark.parametrize("cc", sorted(TARGETS))
@pytest.mark.parametrize("name,hidden", CASES)
def test_feasible_schedule_compiles_without_spills(name: str, hidden: int, cc: int) -> None:
    target = get(TARGETS[cc])
    cell = program(name, hidden)[0].rnn_nodes()[0].attr("cells")[0]
    fit = fit_schedule(cell, target, cc, batch=4)
    sched, res = fit.schedule, fit.measured
    assert res.spill_stores == 0 and res.spill_loads == 0, f"{name} H={hidden} sm_{cc}: {fit.rounds}"
    assert fit.converged, fit.rounds
    pred = sched.resources.registers_per_thread
    assert abs(allocated(res.registers_per_thread) - pred) <= TOLERANCE * pred, fit.rounds
    assert res.shared_memory_per_block <= target.gpu.shared_memory_per_block_optin_bytes
    assert res.registers_per_thread <= target.gpu.registers_per_thread
    assert res.threads_per_block == sched.resources.threads_per_block


def test_uncalibrated_schedule_is_the_solver_s() -> None:
    """Without feedback schedule_for is the plain solver answer (registers only for the weights)."""
    cell = program("lstm", 64)[0].rnn_nodes()[0].attr("cells")[0]
    sched = schedule_for(cell, get("nvidia/h100-sxm"), batch=4)
    assert sched.param("shared_k") == 0 and sched.param("warps") == 4


def test_infeasible_target_is_declined_with_the_reason() -> None:
    prog, _ = program("lstm", 1024)
    ok, why = get_backend("triton").supports(prog, "nvidia/t4")
    assert not ok
    assert "one block per head" in why and "nvidia/t4" in why
