"""Newton's linear-recurrence solve as Triton kernels (``rnnc.backends.triton.newton``), in the
interpreter here: the scan against the recurrence written out in float64 (lengths around the
chunk, one step), GRU and LSTM at T=256 through ``rnnc.compile(backend="triton",
time_parallel=...)`` against torch, and the kernels' ptxas resources on sm_90 (compiled without a
GPU) at the warps the runner picks."""

from __future__ import annotations

import pytest
import torch
from linear_recurrence import random_system, sequential

import rnnc
from rnnc.backends.triton.aot import available
from rnnc.backends.triton.newton import TritonScan, resources, warps_for
from rnnc.tolerances import assert_close


@pytest.mark.parametrize("full", [False, True])
def test_scan_against_the_sequential_recurrence(full: bool) -> None:
    gen = torch.Generator().manual_seed(3)
    scan = TritonScan(chunk=16)
    for steps in (1, 16, 37):
        a, b = random_system(steps, 2, 5, full, gen)
        assert_close(scan(a, b, full), sequential(a, b, full), "float32", "triton", f"T={steps}")


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_newton_on_triton_matches_torch_at_t256(kind: str) -> None:
    torch.manual_seed(0)
    ref = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(8, 24, batch_first=True)
    x = torch.randn(2, 256, 8, generator=torch.Generator().manual_seed(1))
    compiled = rnnc.compile(ref, (x,), backend="triton", time_parallel="newton-full")
    got = compiled(x)
    with torch.no_grad():
        want = ref(x)
    assert_close(got[0], want[0], "float32", "scan", f"{kind} y (Triton scan)")
    (info,) = compiled.runner.info.values()
    assert info.converged and info.iterations <= 8 and "Triton chunked scan" in compiled.explain()


@pytest.mark.skipif(not available(), reason="needs triton's CUDA code generator and ptxas (installed by make setup)")
@pytest.mark.parametrize("full", [False, True])
def test_aot_resources_without_spills(full: bool) -> None:
    """The LSTM above (D = 2 x 24 = 48): no spills at the runner's warps on sm_90."""
    res = resources(full, 48, 64, 90)
    assert res.spill_stores == res.spill_loads == 0
    assert res.threads_per_block == 32 * warps_for(full, 48) and 0 < res.registers_per_thread <= 255
