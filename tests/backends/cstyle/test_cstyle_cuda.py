"""CUDA dialect: the same loop nests compile with nvcc for real architectures, with the shared
memory the lowering predicted and no register spills.  (No GPU here: numerics of these nests
are checked through the C dialect in test_cstyle_numerics.py; running them needs the ``gpu``
marker.)"""

from __future__ import annotations

import pytest
from cstyle_cases import module

from rnnc.backends.cstyle.build import compile_cuda, parse_resources
from rnnc.backends.cstyle.dialects import CudaDialect
from rnnc.errors import InfeasibleError
from rnnc.lower import lower_layer
from rnnc.lower.knobs import DTYPE_BYTES, predict_smem
from rnnc.targets import get

needs_nvcc = pytest.mark.nvcc  # skipped without nvcc by tests/conftest.py (the one skip policy)


def _render(name: str, hidden: int, dtype: str, tag: str = "nvidia/h100-sxm"):
    cell, _ = module(name, hidden).rnnc_layer()
    kernel = lower_layer(cell, get(tag), dtype=dtype, name=f"k_{name}")
    return cell, kernel, CudaDialect(kernel, dtype)


@needs_nvcc
@pytest.mark.parametrize("name,hidden,dtype,arch", [
    ("lstm", 256, "float32", "sm_80"), ("lstm", 256, "float32", "sm_90"),
    ("gru", 128, "float16", "sm_90"), ("lstm", 128, "bfloat16", "sm_80"),
])
def test_fused_kernel_resources_match_prediction(name: str, hidden: int, dtype: str, arch: str) -> None:
    cell, kernel, r = _render(name, hidden, dtype)
    assert kernel.meta["path"] == "fused"
    kn = kernel.meta["knobs"]
    n_in = sum(1 for b in kernel.buffers if b.name.startswith("xp_"))
    assert kernel.meta["projections"] == n_in  # the lowering's own count (fused.in_kernel_projections)
    predicted = predict_smem(hidden, kernel.meta["gates"], kn["tile_hidden"], kn["batch_block"],
                             DTYPE_BYTES[dtype], n_in)
    assert r.smem_bytes == predicted
    _, res = compile_cuda(r.render(), arch)
    assert res.spill_stores == 0 and res.spill_loads == 0, res
    assert 0 < res.registers <= 255
    if not r.dynamic:  # ptxas reports static shared memory only
        assert abs(res.shared_bytes - predicted) <= 0.1 * predicted, (res, predicted)


@needs_nvcc
@pytest.mark.parametrize("name", ["mamba", "slstm"])
def test_generic_kernel_compiles_without_spills(name: str) -> None:
    _, kernel, r = _render(name, 16, "float32")
    assert kernel.meta["path"] == "generic"
    _, res = compile_cuda(r.render(), "sm_90")
    assert res.spill_stores == 0 and res.spill_loads == 0, res
    assert abs(res.shared_bytes - r.smem_bytes) <= 16, (res, r.smem_bytes)


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_fused_sweep(name: str, dtype: str, arch: str) -> None:
    _, _, r = _render(name, 512, dtype)
    _, res = compile_cuda(r.render(), arch)
    assert res.spill_stores == 0 and res.spill_loads == 0, res


def test_infeasible_target_is_explained() -> None:
    cell, _ = module("lstm", 4096).rnnc_layer()
    with pytest.raises(InfeasibleError, match=r"KiB shared memory per block.*nvidia/t4"):
        lower_layer(cell, get("nvidia/t4"), dtype="float32")


def test_parse_resources() -> None:
    text = ("ptxas info    : Used 78 registers, used 1 barriers, 8256 bytes smem, 400 bytes cmem[0]\n"
            "ptxas info    : 16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n")
    res = parse_resources(text, "sm_90")
    assert (res.registers, res.shared_bytes, res.spill_stores, res.spill_loads, res.stack_bytes) == (78, 8256, 8, 4, 16)
