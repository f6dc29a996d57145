"""TVM backend numerics on this CPU: every cell vs the IR interpreter and the cell's reference."""

from __future__ import annotations

import pytest
import torch
from tvm_cases import INPUT, compiled, program, states

from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close

SHAPES = [(b, t) for b in (1, 4) for t in (1, 9)]


@pytest.mark.parametrize("hidden", [16, 64])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_matches_interpreter_and_reference(name: str, hidden: int) -> None:
    prog, mods = program(name, hidden, with_states=True)
    fn = compiled(prog)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    for batch, steps in SHAPES:
        x = torch.randn(batch, steps, INPUT, generator=torch.Generator().manual_seed(batch * 100 + steps))
        init = states(cell, 1, batch)
        got = fn(x, *init)
        want = prog.run(x, *init)
        for g, w, what in zip(got, want, ("y", *cell.state_names), strict=True):
            assert_close(g, w, "float32", "tvm", f"{name} H={hidden} B={batch} T={steps} {what} vs interpreter")
        y_ref, s_ref = mods[0][0](x, tuple(s[0] for s in init))
        assert_close(got[0], y_ref, "float32", "tvm", f"{name} H={hidden} B={batch} T={steps} y vs reference")
        for g, r, what in zip(got[1:], s_ref, cell.state_names, strict=True):
            assert_close(g[0], r, "float32", "tvm", f"{name} H={hidden} B={batch} T={steps} {what} vs reference")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_two_layers_bidirectional_with_lengths(name: str) -> None:
    prog, _ = program(name, 16, layers=2, bidirectional=True, with_states=True, with_lengths=True)
    fn = compiled(prog)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    for batch, steps in SHAPES:
        x = torch.randn(batch, steps, INPUT)
        lengths = torch.randint(1, steps + 1, (batch,))
        lengths[0] = steps
        init = states(cell, 4, batch)
        got, want = fn(x, lengths, *init), prog.run(x, lengths, *init)
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, "float32", "tvm", f"{name} 2 layers bidirectional B={batch} T={steps}")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_long_sequences_and_wide_layers(name: str) -> None:
    """Rounding over many steps at a realistic width (H=256, T=200, B=3: a ragged batch)."""
    prog, _ = program(name, 256)
    fn = compiled(prog)
    x = torch.randn(3, 200, INPUT) * 0.5
    for g, w in zip(fn(x), prog.run(x), strict=True):
        assert_close(g, w, "float32", "tvm", f"{name} H=256 T=200")


def test_user_cell_renders_generically() -> None:
    """A cell rnnc has never seen (ops: linear, clamp, where, silu, gelu, concat, slice,
    reciprocal): the renderer has no per-cell code, so it must just work."""
    from rnnc.ir import Cell, GraphBuilder, StateSpec, rnn_program

    b = GraphBuilder("odd_step")
    x = b.input("x", ("B", 4), "float32")
    h = b.input("h", ("B", 8), "float32")
    w = b.param("w", (8, 12), "float32")
    u = b.param("u", (8, 8), "float32")
    xh = b.op("concat", x, h, axis=-1)
    pre = b.linear(xh, w) + b.linear(h, u)
    pre = b.op("clamp", pre, min=-3.0, max=3.0)
    gate = b.op("where", b.op("gt", pre, b.op("const", value=0.0, dtype="float32")), b.silu(pre), b.gelu(pre))
    half = b.op("slice", gate, axis=-1, start=0, stop=4, step=1)
    scale = b.reciprocal(b.exp(b.op("concat", half, half, axis=-1)) + 1.0)
    h_new = b.tanh(gate * scale + h * 0.5)
    cell = Cell("odd", "nonlinear", 4, 8, 8, (StateSpec("h", (8,)),), b.build({"y": h_new, "h": h_new}))
    g = torch.Generator().manual_seed(3)
    weights = {"w": torch.randn(8, 12, generator=g) * 0.3, "u": torch.randn(8, 8, generator=g) * 0.3}
    prog = rnn_program([cell], [[weights]])
    x_in = torch.randn(2, 7, 4, generator=g)
    for got, want in zip(compiled(prog)(x_in), prog.run(x_in), strict=True):
        assert_close(got, want, "float32", "tvm", "user cell")


def test_several_time_chunks_both_directions() -> None:
    """T=300 spans several projection chunks (``layer.time_chunk``), the last one partial; the
    reverse direction walks the chunks from the end; lengths cut samples mid-chunk."""
    from rnnc.backends.tvm.layer import time_chunk

    prog, _ = program("gru", 64, layers=2, bidirectional=True, with_lengths=True)
    fn = compiled(prog)
    layer = fn.layers[(0, 0, 1)]
    assert time_chunk(layer.plan, layer.knobs) < 300
    x = torch.randn(3, 300, INPUT)
    lengths = torch.tensor([300, 131, 7])
    for got, want in zip(fn(x, lengths), prog.run(x, lengths), strict=True):
        assert_close(got, want, "float32", "tvm", "GRU over several time chunks")
