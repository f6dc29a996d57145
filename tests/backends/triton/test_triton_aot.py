"""Ahead-of-time compilation without a GPU: solver-feasible schedules compile with no spills and
within the device's shared memory; infeasible targets are declined with the solver's reason."""

from __future__ import annotations

import pytest
import torch
from triton_cases import program

from rnnc.backends import get_backend
from rnnc.backends.triton import compile_program, kernel_for, schedule_for
from rnnc.backends.triton.aot import TOLERANCE, allocated, fit_schedule
from rnnc.errors import UnsupportedError
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.targets import get

TARGETS = {80: "nvidia/a100-80gb", 86: "nvidia/rtx-3090", 89: "nvidia/rtx-4090", 90: "nvidia/h100-sxm",
           100: "nvidia/b200"}
# lstm H=64 spills at the solver's first choice (4 warps: 168 predicted, 255 + spills compiled);
# fit_schedule feeds that back (min_warps=8) and must end spill-free.
CASES = [("lstm", 16), ("gru", 16), ("elman", 16), ("lstm", 64), ("gru", 64), ("elman", 64)]
#: one small sample of the other cells and architectures (the full sweep: benchmarks/triton_resources.py)
SAMPLE = [("slstm", 64, 86), ("mingru", 64, 89), ("minlstm", 16, 100), ("lru", 16, 90), ("mamba", 16, 80),
          ("mlstm", 16, 100), ("lstm", 16, 100)]


@pytest.mark.parametrize("name,hidden,cc", [(n, h, cc) for n, h in CASES for cc in (80, 90)] + SAMPLE)
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


def test_infeasible_scan_is_declined_with_the_reason() -> None:
    """A 2048 x 2048 fp32 mLSTM state per head fits neither the chunkwise kernel nor its chunked-scan
    fallback: a clear error naming both, not a crash."""
    torch.manual_seed(0)
    cell, weights = CELLS["mlstm"].load_module_class()(8, 2048, num_heads=1).rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    ok, why = get_backend("triton").supports(prog, "nvidia/h100-sxm")
    assert not ok and "no chunkwise nor chunked-scan schedule" in why and "no tiling fits" in why
    with pytest.raises(UnsupportedError, match="chunked-scan"):
        compile_program(prog, "nvidia/h100-sxm")


def test_runtime_uses_the_fed_back_schedule() -> None:
    """compile_program/layer_kernels launch what fit_schedule checked (LSTM H=64: 8 warps after
    the 4-warp first answer spilled), not the solver's first answer."""
    target = get("nvidia/h100-sxm")
    cell = program("lstm", 64)[0].rnn_nodes()[0].attr("cells")[0]
    lk = kernel_for(cell, target, batch=4)
    fitted = fit_schedule(cell, target, 90, batch=4).schedule
    first = schedule_for(cell, target, batch=4)
    assert (lk.batch_tile, lk.warps) == (fitted.param("batch_tile"), fitted.param("warps"))
    assert lk.warps != first.param("warps")
