"""Register-resident recurrent weights in the fused CUDA kernel (FlashRNN-style).

The loop nest (warps own weight rows, lanes split K, ``register_k`` columns per row in a
per-thread register array, the rest in shared memory) runs through the C dialect against the IR
interpreter; its CUDA rendering is compiled with nvcc and held against the Schedule the solver
chose: registers at the predicted count (``__maxnreg__``), no spills, shared memory as predicted.
"""

from __future__ import annotations

import re

import pytest
import torch
from cstyle_cases import module

from rnnc.backends.cstyle.artifact import solver_schedule
from rnnc.backends.cstyle.cuda_fit import arch_of, fit_cuda_schedule
from rnnc.backends.cstyle.dialects import CudaDialect
from rnnc.backends.cstyle.program import build_kernel
from rnnc.backends.cstyle.runtime import LayerRunner, RnnRunner
from rnnc.ir import rnn_program
from rnnc.lower import lower_layer
from rnnc.lower.knobs import DTYPE_BYTES, knobs_for, predict_smem
from rnnc.lower.warp_gemm import LANES, split_for
from rnnc.targets import get
from rnnc.tolerances import assert_close

needs_nvcc = pytest.mark.nvcc  # skipped without nvcc by tests/conftest.py (the one skip policy)
A100 = "nvidia/a100-80gb"


def _gpu_kernel(name: str, hidden: int, knobs: dict, dtype: str = "float32"):
    cell, weights = module(name, hidden).rnnc_layer()
    sched = {**knobs_for(hidden, 4, get(A100), dtype=dtype).to_dict(), **knobs}
    sched["workers"] = hidden // sched["tile_hidden"]
    return cell, weights, lower_layer(cell, get(A100), sched, dtype, name=f"reg_{name}_{hidden}")


@pytest.mark.parametrize("name,hidden,knobs", [
    ("lstm", 40, {"register_k": 13, "threads": 64, "tile_hidden": 10, "batch_block": 2}),  # partial slots
    ("gru", 64, {"register_k": 64, "threads": 96, "tile_hidden": 16, "batch_block": 4}),  # all in registers
    ("lstm", 64, {"register_k": 40, "threads": 32, "tile_hidden": 8, "batch_block": 1}),  # one warp
    ("gru", 48, {"register_k": 0, "threads": 64, "tile_hidden": 6, "batch_block": 2}),  # all in shared memory
])
def test_warp_split_nest_matches_interpreter(name: str, hidden: int, knobs: dict) -> None:
    cell, weights, kernel = _gpu_kernel(name, hidden, knobs)
    assert kernel.meta["knobs"]["register_k"] == knobs["register_k"]
    assert bool(kernel.registers) == (knobs["register_k"] > 0)
    b = build_kernel(kernel)
    runner = RnnRunner([[LayerRunner(kernel, b.fn, weights)]], [cell], batch_first=True)
    x = torch.randn(5, 6, cell.input_size, generator=torch.Generator().manual_seed(4))
    got = runner(x)
    want = rnn_program([cell], [[weights]]).run(x)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, "float32", "c", f"{name} warp-split nest")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_register_array_is_per_thread_with_constant_slots(dtype: str) -> None:
    """CUDA: each thread declares only its own slots (fp16/bf16 two per 32-bit word), and no
    register-array index depends on the thread (so unrolling makes every index a constant)."""
    knobs = {"register_k": 13, "threads": 64, "tile_hidden": 10, "batch_block": 2, "max_registers": 96}
    _, _, kernel = _gpu_kernel("lstm", 40, knobs, dtype)
    src = CudaDialect(kernel, dtype).render()
    sp = split_for(4 * 10, 40, 64, 13)
    assert sp.slots == -(-(sp.wr * 13) // LANES)
    words = sp.slots if dtype == "float32" else (sp.slots + 1) // 2
    decl = re.findall(r"^\s*(float|unsigned) (g_\w+)\[(\d+)\]", src, re.M)
    assert [(t, int(n)) for t, _, n in decl] == [("float" if dtype == "float32" else "unsigned", words)]
    buf = decl[0][1]
    for index in re.findall(rf"{buf}\[([^\]]*)\]", src):
        assert not re.search(r"\b(lane|wv|threadIdx)\b", index), index
    assert "__maxnreg__(96)" in src and "__launch_bounds__" not in src


@pytest.mark.parametrize("tag,name,hidden,dtype", [
    ("nvidia/h100-sxm", "lstm", 256, "float32"), ("nvidia/h100-sxm", "gru", 128, "bfloat16"),
    ("nvidia/rtx-4090", "lstm", 512, "float16"), ("nvidia/a100-80gb", "gru", 1024, "float32"),
])
def test_rendered_shared_memory_is_predicted(tag: str, name: str, hidden: int, dtype: str) -> None:
    cell, _ = module(name, hidden).rnnc_layer()
    sched = solver_schedule(cell, get(tag), dtype)
    kernel = lower_layer(cell, get(tag), sched, dtype, name="k")
    kn = kernel.meta["knobs"]
    assert kn["register_k"] == sched.param("register_k") and kn["max_registers"] == \
        sched.resources.registers_per_thread
    pred = predict_smem(hidden, kernel.meta["gates"], kn["tile_hidden"], kn["batch_block"], DTYPE_BYTES[dtype],
                        _in_kernel_projections(kernel), kn["register_k"])
    assert CudaDialect(kernel, dtype).smem_bytes == pred


def _in_kernel_projections(kernel) -> int:  # noqa: ANN001
    """Input projections the kernel computes itself (0 when cuBLAS does them: Knobs.host_gemm)."""
    return sum(1 for b in kernel.buffers if b.name.startswith("xp_"))


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("tag,name,hidden,dtype", [
    ("nvidia/h100-sxm", "gru", 512, "float32"),
    ("nvidia/a100-80gb", "lstm", 256, "bfloat16"),
])  # and nvidia/rtx-4090 GRU H=256 fp32 through the whole artifact path, below
def test_nvcc_meets_the_schedule(tag: str, name: str, hidden: int, dtype: str) -> None:
    """After register feedback the Schedule's register/shared split is kept, ptxas uses the
    predicted registers (within 10 %, never more), spills nothing, and shared memory is as
    predicted (ptxas does not pad the last array to 16 bytes)."""
    cell, _ = module(name, hidden).rnnc_layer()
    target = get(tag)
    fit = fit_cuda_schedule(cell, target, dtype, f"fit_{name}")
    assert fit.schedule is not None, fit.note
    assert fit.arch == arch_of(target)
    kn, res = fit.kernel.meta["knobs"], fit.resources
    predicted = fit.schedule.resources.registers_per_thread
    assert kn["register_k"] == fit.schedule.param("register_k") > 0
    assert res.spill_stores == 0 and res.spill_loads == 0, res
    assert 0.9 * predicted <= res.registers <= predicted, (res, predicted, fit.rounds)
    pred_smem = predict_smem(hidden, fit.kernel.meta["gates"], kn["tile_hidden"], kn["batch_block"],
                             DTYPE_BYTES[dtype], _in_kernel_projections(fit.kernel), kn["register_k"])
    r = CudaDialect(fit.kernel, dtype)
    if not r.dynamic:
        assert 0 <= pred_smem - res.shared_bytes < 16, (res, pred_smem)
    assert fit.rounds[-1]["registers"] == res.registers and fit.rounds[-1]["spill_stores"] == 0


@needs_nvcc
def test_manifest_records_split_and_registers(tmp_path, monkeypatch) -> None:
    """``rnnc compile --backend cuda``: the manifest says where R lives and how ptxas's registers
    compare with the Schedule's prediction."""
    from rnnc.backends.cstyle.artifact import compile_to_dir

    mod = torch.nn.GRU(6, 256, batch_first=True)
    prog = rnnc_trace(mod)
    manifest = compile_to_dir(prog, "nvidia/rtx-4090", "cuda", tmp_path, archs=("sm_89",))
    (layer,) = manifest["layers"].values()
    kn, split = layer["knobs"], layer["weight_split"]
    assert split["register_k"] == kn["register_k"] == layer["schedule"]["params"]["register_k"] > 0
    sp = split_for(3 * kn["tile_hidden"], 256, kn["threads"], kn["register_k"])
    (lin,) = split["linears"].values()
    assert lin["register_bytes_per_thread"] == sp.slots * 4
    assert lin.get("shared_bytes", 0) == sp.rows * sp.shared_k * 4
    regs = layer["registers"]
    assert regs["predicted"] == layer["schedule"]["resources"]["registers_per_thread"] == regs["cap"]
    assert 0.9 * regs["predicted"] <= regs["ptxas"]["sm_89"] <= regs["predicted"]
    assert regs["spills"] == {"sm_89": 0}
    assert layer["register_fit"]["rounds"][-1]["spill_stores"] == 0
    # without a GPU rnnc.load runs the C twin of exactly this (solver-shaped, register-split) nest
    import rnnc
    from rnnc.backends.cstyle import cuda_driver

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the twin, also on a GPU machine
    monkeypatch.setattr(cuda_driver, "_DRIVER", None)
    x = torch.randn(2, 5, 6)
    with torch.no_grad():
        want = mod(x)[0]
    assert_close(rnnc.load(tmp_path)(x)[0], want, "float32", "c", "C twin of the fitted GRU kernel")


def rnnc_trace(mod: torch.nn.Module):
    import rnnc

    return rnnc.trace(mod, (torch.randn(1, 4, 6),))


def test_a_dtype_the_target_lacks_is_an_error_not_a_fallback() -> None:
    """nvidia/t4 (sm_75) lists no bf16: the user hears that, instead of getting heuristic knobs
    the solver never checked."""
    from rnnc.errors import UserInputError

    cell, _ = module("gru", 128).rnnc_layer()
    with pytest.raises(UserInputError, match="does not support dtype bf16"):
        solver_schedule(cell, get("nvidia/t4"), "bfloat16")
