"""Triton backend numerics (interpreter on CPU; launched kernels on a GPU): every fused cell vs the
IR interpreter and the cell's reference module, plus the cells the backend declines."""

from __future__ import annotations

import pytest
import torch
from triton_cases import FUSED, INPUT, program, states

from rnnc.backends import get_backend
from rnnc.backends.triton import compile_program
from rnnc.errors import UnsupportedError
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close

SHAPES = [(b, t) for b in (1, 4) for t in (1, 9)]


def _check(name: str, hidden: int) -> None:
    prog, mods = program(name, hidden, with_states=True)
    fn = compile_program(prog)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    for batch, steps in SHAPES:
        x = torch.randn(batch, steps, INPUT, generator=torch.Generator().manual_seed(batch * 100 + steps))
        init = states(cell, 1, batch)
        got = [g.cpu() for g in fn(x, *init)]
        want = prog.run(x, *init)
        label = f"{name} H={hidden} B={batch} T={steps}"
        for g, w, what in zip(got, want, ("y", *cell.state_names), strict=True):
            assert_close(g, w, "float32", "triton", f"{label} {what} vs interpreter")
        y_ref, s_ref = mods[0][0](x, tuple(s[0] for s in init))
        assert_close(got[0], y_ref, "float32", "triton", f"{label} y vs reference")
        for g, r, what in zip(got[1:], s_ref, cell.state_names, strict=True):
            assert_close(g[0], r, "float32", "triton", f"{label} {what} vs reference")


@pytest.mark.parametrize("hidden", [16, 64])
@pytest.mark.parametrize("name", FUSED)
def test_fused_cell_matches_interpreter_and_reference(name: str, hidden: int) -> None:
    _check(name, hidden)


@pytest.mark.gpu
@pytest.mark.parametrize("name", FUSED)
def test_fused_cell_on_gpu(name: str) -> None:
    _check(name, 64)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_two_layers_bidirectional_with_lengths(name: str) -> None:
    prog, _ = program(name, 16, layers=2, bidirectional=True, with_states=True, with_lengths=True)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    x = torch.randn(4, 9, INPUT, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([9, 3, 1, 7])
    init = states(cell, 4, 4)
    got = compile_program(prog)(x, lengths, *init)
    for g, w, what in zip(got, prog.run(x, lengths, *init), ("y", *cell.state_names), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", f"{name} 2 layers bidirectional {what}")


@pytest.mark.parametrize("name", sorted(n for n in CELLS if n not in FUSED))
def test_other_cells_are_declined_with_a_reason(name: str) -> None:
    prog, _ = program(name, 16)
    ok, why = get_backend("triton").supports(prog)
    assert not ok and "triton" in why.lower() and name in why
    with pytest.raises(UnsupportedError):
        compile_program(prog)
