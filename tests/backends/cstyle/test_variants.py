"""The C/CUDA differences are data (``rnnc.backends.cstyle.variants``): the checks that read them."""

from __future__ import annotations

import pytest

from rnnc.backends import get_backend
from rnnc.backends.cstyle.variants import CUDA, C, variant
from rnnc.errors import UserInputError
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.targets import get


def _program():
    import torch

    gru = torch.nn.GRU(4, 8)
    cell = CELLS["gru"].build_cell(4, 8)
    return rnn_program([cell], [[{p: getattr(gru, f"{p}_l0").detach() for p in cell.param_names}]], name="g")


def test_each_backend_refuses_the_other_kind_of_device_naming_its_sibling():
    ok, why = get_backend("c").supports(_program(), get("nvidia/t4"))
    assert not ok and "C backend runs on CPUs" in why and "--backend cuda" in why
    ok, why = get_backend("cuda").supports(_program(), get("cpu/x86-avx2"))
    assert not ok and "CUDA backend needs a GPU target" in why and "--backend c" in why
    assert C.wrong_target(get("cpu/x86-avx2")) == "" and CUDA.wrong_target(get("nvidia/t4")) == ""


def test_kernel_dtypes_and_unknown_names():
    assert C.kernel_dtype("bfloat16") == "float32" and CUDA.kernel_dtype("bfloat16") == "bfloat16"
    assert variant("cuda") is CUDA and C.default_target == "cpu/host" and CUDA.on_gpu and not C.on_gpu
    with pytest.raises(UserInputError, match="'c' and 'cuda'"):
        variant("metal")
