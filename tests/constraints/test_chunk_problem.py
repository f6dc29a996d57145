"""The chunk family (matrix-state cells in chunkwise form): schedules that respect the device,
infeasibility explained in device units, the CPU model, and -- where Triton's AOT compiler works
here -- ptxas's registers against the solver's prediction after compiler feedback."""

from __future__ import annotations

import pytest

from rnnc.constraints import InfeasibleTiling, ProblemSpec, solve
from rnnc.targets import get

FAMILY = ("gla", "retnet", "hgrn2", "deltanet", "mamba2")


@pytest.mark.parametrize("cell", FAMILY)
@pytest.mark.parametrize("tag", ["nvidia/h100-sxm", "nvidia/t4", "nvidia/jetson-orin-nano"])
def test_schedule_fits_the_device(cell: str, tag: str) -> None:
    spec = ProblemSpec(cell, 512, heads=8, batch=4, dtype="fp16", state_size=64, seq_len=2048)
    sched = solve(spec, tag)
    g = get(tag).gpu
    p = dict(sched.params)
    assert sched.kernel == "chunkwise"
    assert p["chunk"] in (16, 32, 64) and p["value_tile"] >= 16 and p["value_tile"] & (p["value_tile"] - 1) == 0
    assert p["value_tiles"] * p["value_tile"] == p["padded_value_dim"] == 64
    r = sched.resources
    assert r.registers_per_thread <= g.registers_per_thread
    assert r.shared_memory_per_block <= g.shared_memory_per_block_optin_bytes
    assert r.blocks == 4 * 8 * p["value_tiles"]
    assert sched.estimate is not None and sched.estimate.seconds > 0


def test_the_delta_rule_costs_more_than_plain_decay() -> None:
    """Same sizes: the delta rule's extra products and triangular solve show in the estimate."""
    est = {c: solve(ProblemSpec(c, 1024, heads=8, batch=8, dtype="bf16", state_size=128, seq_len=4096),
                    "nvidia/h100-sxm").estimate.flops for c in ("retnet", "deltanet")}
    assert est["deltanet"] > 1.2 * est["retnet"]


def test_too_wide_a_key_is_explained_in_device_units() -> None:
    """A 4096-wide key per head: the smallest chunk's tiles outgrow a T4's register file per block."""
    spec = ProblemSpec("gla", 4096, heads=1, batch=1, dtype="fp16", state_size=4096)
    with pytest.raises(InfeasibleTiling) as exc:
        solve(spec, "nvidia/t4")
    text = str(exc.value)
    assert "nvidia/t4" in text and "KiB" in text and "DK=4096" in text
    assert "Smallest changes that fit" in text and "key width" in text


@pytest.mark.parametrize("cell", FAMILY)
def test_cpu_model(cell: str) -> None:
    sched = solve(ProblemSpec(cell, 256, heads=4, batch=2, dtype="fp32", state_size=64, seq_len=2048), "cpu/host")
    p = dict(sched.params)
    assert sched.kernel == "cpu_chunkwise" and p["chunk"] in (16, 32, 64, 128)
    footprint = dict(sched.resources.cache_footprint)
    assert footprint["l1d"] <= get("cpu/host").cpu.l1d_bytes


def test_ptxas_registers_against_the_prediction() -> None:
    """sm_90, GLA H=256 4 heads: after compiler feedback the allocated registers are within the
    feedback tolerance of the schedule's prediction and nothing spills."""
    from rnnc.backends.triton import aot
    from rnnc.kernels import CELLS

    if not aot.available():
        pytest.skip("Triton's AOT compiler (ptxas) is not available here")
    cell = CELLS["gla"].load_module_class()(64, 256, num_heads=4).rnnc_layer()[0]
    fit = aot.fit_schedule(cell, get("nvidia/h100-sxm"), 90, 8)
    last = fit.rounds[-1]
    assert fit.converged and last["spill_stores"] == last["spill_loads"] == 0
    assert abs(last["allocated_registers"] - last["predicted_registers"]) <= aot.TOLERANCE * last["predicted_registers"]
