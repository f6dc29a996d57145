"""Triton backend numerics (interpreter on CPU; launched kernels on a GPU): every cell -- fused
(lstm, gru, elman, slstm) and chunked scan (mingru, minlstm, lru, mamba, mlstm) -- vs the IR
interpreter and the cell's reference module, on issue 4's grid B in {1, 4}, T in {1, 9}, H in {16, 64}."""

from __future__ import annotations

import pytest
import torch
from triton_cases import FUSED, INPUT, SCAN, program, states

from rnnc.backends.triton import compile_program
from rnnc.tolerances import assert_close

SHAPES = [(b, t) for b in (1, 4) for t in (1, 9)]


def _check(name: str, hidden: int, shapes: list[tuple[int, int]] = SHAPES) -> None:
    prog, mods = program(name, hidden, with_states=True)
    fn = compile_program(prog)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    for batch, steps in shapes:
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


@pytest.mark.parametrize("name", [*FUSED, *SCAN])
def test_cell_matches_interpreter_and_reference_h16(name: str) -> None:
    _check(name, 16)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*FUSED, *SCAN])
def test_cell_matches_interpreter_and_reference_h64(name: str) -> None:
    _check(name, 64)


@pytest.mark.gpu
@pytest.mark.parametrize("name", [*FUSED, *SCAN])
def test_cell_on_gpu(name: str) -> None:
    _check(name, 64)


@pytest.mark.parametrize("name", ["lstm", "gru", "slstm", "lru", "mlstm"])
def test_two_layers_bidirectional_with_lengths(name: str) -> None:
    """Reverse direction and packed lengths: fused kernels hold the state past a sequence's end;
    scans get identity coefficients there and run on the time-flipped sequence."""
    prog, _ = program(name, 16, layers=2, bidirectional=True, with_states=True, with_lengths=True)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    x = torch.randn(4, 9, INPUT, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([9, 3, 1, 7])
    init = states(cell, 4, 4)
    got = compile_program(prog)(x, lengths, *init)
    for g, w, what in zip(got, prog.run(x, lengths, *init), ("y", *cell.state_names), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", f"{name} 2 layers bidirectional {what}")


def test_long_sequence_crosses_chunks() -> None:
    """T > chunk: the carried state links chunks (chunk 64 on the CPU target)."""
    prog, _ = program("lru", 16, with_states=True)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    x = torch.randn(2, 150, INPUT, generator=torch.Generator().manual_seed(7))
    init = states(cell, 1, 2)
    for g, w in zip(compile_program(prog)(x, *init), prog.run(x, *init), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", "lru T=150")


@pytest.mark.parametrize("name", ["mamba", "gru"])
def test_gpu_target_launch_configuration_in_interpreter(name: str) -> None:
    """The launch configuration of a GPU target's (fed-back) Schedule -- scan chunk/tile/warps,
    fused batch tile -- computes the same numbers (run here under the interpreter)."""
    prog, _ = program(name, 16, with_states=True)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    x = torch.randn(4, 9, INPUT, generator=torch.Generator().manual_seed(8))
    init = states(cell, 1, 4)
    got = compile_program(prog, "nvidia/h100-sxm", batch=4)(x, *init)
    for g, w in zip(got, prog.run(x, *init), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", f"{name} at the h100 schedule")


def test_slstm_runs_one_program_per_head() -> None:
    """sLSTM's head-wise recurrent matmul never mixes heads: the grid gets one program per head
    (the solver's single-block-per-head schedule) and only diagonal weight blocks are loaded."""
    from rnnc.backends.triton.runtime import layer_kernel

    cell = program("slstm", 64)[0].rnn_nodes()[0].attr("cells")[0]
    lk = layer_kernel(cell)
    assert (lk.plan.heads, lk.plan.head_dim, lk.plan.piece) == (4, 16, 16)
    # 4 gates x one 16 x 16 block of head `hoff`, instead of 4 x (64 / 16)^2 dense tiles
    assert lk.source.count("= tl.load(v_weight_hh_blockdiag_ptr") == 4

