"""The C dialect's inline sigmoid/tanh (``rn_fsigmoid``, ``rn_ftanh``) against torch's, over
the whole float range a gate pre-activation can take, built with the backend's own gcc flags
(``-ffast-math`` included, so a flag that broke the exponent trick would show here)."""

from __future__ import annotations

import ctypes

import pytest
import torch

from rnnc.backends.cstyle.build import build_c, load_library
from rnnc.backends.cstyle.dialects import _C_GATE_MATH
from rnnc.tolerances import assert_close

_SOURCE = "#include <math.h>\n" + _C_GATE_MATH + """
void eval_gates(const float* x, float* sig, float* th, long n) {
  #pragma omp simd
  for (long i = 0; i < n; ++i) { sig[i] = rn_fsigmoid(x[i]); th[i] = rn_ftanh(x[i]); }
}
"""


def test_sigmoid_and_tanh_match_torch() -> None:
    fn = load_library(build_c(_SOURCE)).eval_gates
    x = torch.cat([torch.linspace(-120.0, 120.0, 200_001), torch.linspace(-0.1, 0.1, 20_001),
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, 0.0625, -0.0625, 88.5, -88.5, 1e30, -1e30])])
    sig, th = torch.empty_like(x), torch.empty_like(x)
    fn(ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(sig.data_ptr()), ctypes.c_void_p(th.data_ptr()),
       ctypes.c_long(x.numel()))
    xd = x.double()
    assert_close(sig, torch.sigmoid(xd).float(), "float32", "c", "rn_fsigmoid vs torch.sigmoid")
    assert_close(th, torch.tanh(xd).float(), "float32", "c", "rn_ftanh vs torch.tanh")
    # tighter than the tolerance table: a few ulp relative for sigmoid (where it is a normal float:
    # kernels flush denormals inside their own threads), 1e-7 absolute for tanh
    want = torch.sigmoid(xd)
    normal = want > 1e-30
    assert ((sig.double() - want).abs()[normal] / want[normal]).max() < 1e-6
    assert sig[~normal].abs().max() < 1e-30
    assert (th.double() - torch.tanh(xd)).abs().max() < 2e-7
    small = x.abs() < 0.0625  # odd and accurate near 0, where 1 - 2/(e^2x + 1) would cancel
    assert ((th[small].double() - torch.tanh(xd[small])).abs() / xd[small].abs().clamp_min(1e-37)).max() < 1e-6


@pytest.mark.parametrize("fn", ["sigmoid", "tanh"])
def test_cuda_dialect_keeps_libm(fn: str) -> None:
    """Only the C dialect swaps in the inline forms; CUDA renders its own fast intrinsics."""
    from rnnc.backends.cstyle.dialects import CDialect, CudaDialect

    assert fn in CDialect.calls and fn not in CudaDialect.calls
