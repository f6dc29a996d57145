"""The lowering: which path each cell takes, the loop nest's shape, knobs from a Schedule."""

from __future__ import annotations

import pytest
import torch

from rnnc.kernels import CELLS
from rnnc.lower import Knobs, knobs_for, lower_layer
from rnnc.lower.gates import analyse_gates
from rnnc.lower.loopnest import Barrier, Loop, eval_int
from rnnc.targets import get

FUSED = {"lstm": 4, "gru": 3, "elman": 1, "mingru": 2, "minlstm": 3}


def _cell(name: str, hidden: int = 16):
    torch.manual_seed(0)
    return CELLS[name].load_module_class()(8, hidden).rnnc_layer()[0]


@pytest.mark.parametrize("name", list(CELLS))
def test_path_choice(name: str) -> None:
    plan = analyse_gates(_cell(name))
    if name in FUSED:
        assert plan is not None and plan.gates == FUSED[name]
    else:
        assert plan is None  # heads, matrix memory, complex or selective-scan states: generic path


def _walk(stmts):
    for s in stmts:
        yield s
        if isinstance(s, Loop):
            yield from _walk(s.body)
        elif hasattr(s, "body"):
            yield from _walk(s.body)


def test_fused_nest_has_one_grid_barrier_per_step() -> None:
    kernel = lower_layer(_cell("lstm"), get("cpu/x86-avx512"))
    loops = {s.var: s for s in _walk(kernel.body) if isinstance(s, Loop)}
    assert loops["w"].kind == "parallel"
    step_barriers = [s for s in loops["tt"].body if isinstance(s, Barrier)]
    assert [b.scope for b in step_barriers] == ["grid"]
    packs = {p.buf: p for p in kernel.packs}
    assert packs["w_t1"].shape == (4, 1, 16, 16) and packs["w_t1"].perm == (1, 3, 0, 2)
    assert eval_int(kernel.buffer("hb_h").size, {"B": 3, "T": 5}) == 2 * 3 * 16


def test_cpu_and_gpu_knobs_differ_only_in_data() -> None:
    cpu = knobs_for(256, 4, get("cpu/x86-avx512"))
    gpu = knobs_for(256, 4, get("nvidia/h100-sxm"))
    assert not cpu.reduce_inner and gpu.reduce_inner and gpu.resident
    assert 256 % gpu.tile_hidden == 0 and gpu.workers == 256 // gpu.tile_hidden <= 132


def test_knobs_from_schedule() -> None:
    from rnnc.constraints import ProblemSpec, solve

    sched = solve(ProblemSpec("lstm", hidden=256, batch=1, dtype="fp32"), "nvidia/h100-sxm")
    kn = knobs_for(256, 4, get("nvidia/h100-sxm"), sched)
    assert kn.tile_hidden == sched.param("hidden_tile")
    assert kn.threads == 32 * sched.param("warps")
    assert knobs_for(64, 4, None, {"tile_hidden": 8}) == Knobs(**{**knobs_for(64, 4).to_dict(), "tile_hidden": 8})


def test_cpu_schedule_params_reach_the_kernel() -> None:
    """``cpu_fused_recurrence`` params become knobs (threads, micro-tile, batch tile, K block), and
    Schedules that differ in them give different C kernels (the tuner's candidates stay distinct)."""
    from rnnc.backends.cstyle.dialects import CDialect
    from rnnc.constraints import ProblemSpec, candidates

    target = get("cpu/x86-avx512")
    scheds = candidates(ProblemSpec("lstm", hidden=64, batch=8, seq_len=32, dtype="fp32"), target, 4)
    assert {s.kernel for s in scheds} == {"cpu_fused_recurrence"}
    sources = set()
    for s in scheds:
        p = dict(s.params)
        kn = knobs_for(64, 4, target, s)
        assert kn.workers == p["threads"] and kn.batch_block == p["nr"] and kn.k_block == p["k_block"]
        assert 64 % kn.tile_hidden == 0 and 4 * kn.tile_hidden <= p["mr"] * p["vector_lanes"]
        sources.add(CDialect(lower_layer(_cell("lstm", 64), target, s, name="k")).render())
    distinct = {(s.param("k_block"), s.param("mr"), s.param("nr")) for s in scheds}
    assert len(sources) == len(distinct) > 1


@pytest.mark.parametrize("workers", [1, 3])
def test_resident_weights_need_a_worker_per_tile(workers: int) -> None:
    """A GPU schedule with fewer blocks than weight tiles would run a block's later tiles on its
    first tile's resident weights: lowering refuses it in one sentence instead."""
    from rnnc.errors import InfeasibleError

    cell, _ = CELLS["lstm"].load_module_class()(8, 64).rnnc_layer()
    target = get("nvidia/a100-80gb")
    knobs = {**knobs_for(64, 4, target).to_dict(), "tile_hidden": 16, "workers": workers}
    with pytest.raises(InfeasibleError, match="4 tiles of 16 units need 4 workers"):
        lower_layer(cell, target, knobs, "float32", name="k")
    kernel = lower_layer(cell, target, {**knobs, "workers": 4}, "float32", name="k")
    assert kernel.meta["tiles"] == 4
