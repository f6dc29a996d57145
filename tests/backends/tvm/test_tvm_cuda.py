"""CUDA from the TVM backend without a GPU: source generated for sm_80/sm_90 and nvcc-checked."""

from __future__ import annotations

import pytest
from tvm_cases import program

from rnnc.backends.tvm.cuda import cuda_source, nvcc_resources
from rnnc.kernels import CELLS
from rnnc.targets import get

needs_nvcc = pytest.mark.nvcc  # skipped without nvcc by tests/conftest.py (the one skip policy)


def _check(name: str, arch: str, tmp_path) -> None:
    prog, _ = program(name, 64)
    source, fns = cuda_source(prog, get("nvidia/h100-sxm"), arch)
    assert "__global__" in source and fns[0].name in source
    kernels = nvcc_resources(source, arch, tmp_path)
    assert kernels, f"nvcc reported no kernels for {name} on {arch}"
    for kname, res in kernels.items():
        assert res["registers"] > 0, kname
        assert res["spill_stores"] == 0 and res["spill_loads"] == 0, f"{kname} spills on {arch}: {res}"


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", ["lstm", "gru", "mamba"])
def test_cuda_source_compiles(name: str, arch: str, tmp_path) -> None:
    _check(name, arch, tmp_path)


@needs_nvcc
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", sorted(set(CELLS) - {"lstm", "gru", "mamba"}))
def test_cuda_source_compiles_every_cell(name: str, arch: str, tmp_path) -> None:
    _check(name, arch, tmp_path)
