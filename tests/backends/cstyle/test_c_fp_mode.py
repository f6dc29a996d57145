"""Loading a C kernel leaves the process's floating-point mode alone: gcc links crtfastmath.o into a
``-ffast-math`` shared library, whose constructor turns on flush-to-zero for every thread of the
process -- torch included -- so rnnc builds the kernels with fast math but links them without it
(``rnnc.backends.cstyle.build``) and flushes denormals only inside its own kernel threads."""

from __future__ import annotations

import torch

from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS


def test_a_loaded_kernel_does_not_flush_torch_denormals() -> None:
    tiny = torch.tensor([1e-44])  # a float32 denormal
    assert float(tiny * 1.0) > 0  # the process starts in IEEE mode (else this test could not fail)
    torch.manual_seed(0)
    cell, weights = CELLS["gru"].load_module_class()(4, 8).rnnc_layer()
    compiled = CompiledProgram(rnn_program([cell], [[weights]]))
    y, _ = compiled(torch.randn(2, 5, 4))
    assert torch.isfinite(y).all()
    assert float(tiny * 1.0) > 0 and float(torch.exp(torch.tensor(-102.0))) > 0
