"""CPU tilings of the fused C kernel: every tiling a Schedule can ask for computes the same layer.

The knobs here are the ones ``cpu_fused_recurrence`` Schedules set (``threads``, ``mr`` ->
``tile_hidden``, ``nr`` -> ``batch_block``, ``k_block``) and the tuner's own (``host_gemm``,
``ukernel``); each combination is checked against the
IR interpreter and the cell's plain-torch reference, with batch sizes that leave remainder rows
next to full row blocks and enough tiles per worker for the serpentine tile order to matter.
"""

from __future__ import annotations

import pytest
import torch
from cstyle_cases import module, states

from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.ir import rnn_program
from rnnc.ir.printer import layer_key
from rnnc.ir.rnn import rnn_layout
from rnnc.kernels import CELLS
from rnnc.lower.knobs import cpu_knobs
from rnnc.tolerances import assert_close

TILINGS = [
    {"tile_hidden": 4, "batch_block": 4, "k_block": 8, "workers": 2},  # K blocked in 4, remainder rows
    {"tile_hidden": 8, "batch_block": 2, "k_block": 16, "workers": 1},
    {"tile_hidden": 16, "batch_block": 1, "k_block": 0, "workers": 2},  # B=1-style GEMV for every row
    {"tile_hidden": 2, "batch_block": 3, "k_block": 5, "workers": 2},  # k_block not dividing K: unblocked
    # the input projection by torch's BLAS before the kernel (the kernel reads [T, B, G*H])
    {"tile_hidden": 8, "batch_block": 3, "k_block": 0, "workers": 2, "host_gemm": 1},
    # the loop form of the GEMM tiles instead of the micro-kernel
    {"tile_hidden": 4, "batch_block": 4, "k_block": 0, "workers": 2, "ukernel": 0},
]


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("knobs", TILINGS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_tiling_matches_interpreter_and_reference(name: str, knobs: dict) -> None:
    hidden, batch, steps = 32, 6, 5
    mod = module(name, hidden)
    cell, weights = mod.rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    compiled = CompiledProgram(prog, schedule={layer_key(cell): knobs})
    kernel = next(iter(compiled.builds.values())).kernel
    assert {k: kernel.meta["knobs"][k] for k in knobs} == knobs
    x = torch.randn(batch, steps, cell.input_size, generator=torch.Generator().manual_seed(4))
    init = states(cell, batch)
    got = compiled(x, *[s.unsqueeze(0) for s in init])
    want = prog.run(x, *[s.unsqueeze(0) for s in init])
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, "float32", "c", f"{name} {knobs} output {i} vs interpreter")
    ref_y, _ = CELLS[name].reference()(x, dict(weights), init, **mod.hparams())
    assert_close(got[0], ref_y, "float32", "c", f"{name} {knobs} y vs reference")


def test_k_block_changes_the_kernel_only_for_row_blocks() -> None:
    """A K-blocked kernel has the ``kb`` loop and its partial-sum buffer; one-row tiles do not."""
    cell, weights = module("lstm", 32).rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    key = layer_key(cell)
    blocked = CompiledProgram(prog, schedule={key: {"batch_block": 4, "k_block": 8}}).sources[key]
    plain = CompiledProgram(prog, schedule={key: {"batch_block": 4, "k_block": 0}}).sources[key]
    gemv = CompiledProgram(prog, schedule={key: {"batch_block": 1, "k_block": 8}}).sources[key]
    assert "kacc_" in blocked and "for (long kb = 0; kb < 4; ++kb)" in blocked
    assert "kacc_" not in plain and "kacc_" not in gemv


@pytest.mark.parametrize("batch", [1, 5])
def test_int8_gru_streams_codes_through_the_int8_micro_kernels(batch: int) -> None:
    """Weight-only int8 with its codes streamed: the float tile (the micro-kernels widen codes per
    vector, no byte-wide tile), the one-row kernel with interleaved accumulator sets at B=1 and
    the row tile beside it at B=5, computing what the quantized IR means."""
    import rnnc

    cell, weights = module("gru", 64).rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    calib = [torch.randn(2, 6, cell.input_size, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    q = rnnc.quantize(prog, calib, scheme="w8", progress=False)
    qcell = rnn_layout(q.program.rnn_nodes()[0].attr_dict)[0][0]
    compiled = CompiledProgram(q.program, schedule={layer_key(qcell): {"widen_codes": 0}})
    kernel = next(iter(compiled.builds.values())).kernel
    assert kernel.meta["path"] == "fused"
    assert kernel.meta["knobs"]["tile_hidden"] == cpu_knobs(64, 3, None, "float32").tile_hidden
    source = next(iter(compiled.sources.values()))
    assert "_int8_p" in source and "_int8(" in source  # one-row and row-tile int8 kernels
    x = torch.randn(batch, 7, cell.input_size, generator=torch.Generator().manual_seed(5))
    init = [s.unsqueeze(0) for s in states(cell, batch)]
    for i, (g, w) in enumerate(zip(compiled(x, *init), q.program.run(x, *init), strict=True)):
        assert_close(g, w, "float32", "c", f"int8 gru output {i} vs the quantized interpreter")


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_rows_past_their_length_in_row_blocks(name: str) -> None:
    """Liveness picks one of two loops per batch row (the CPU epilogue has no per-store select):
    rows that end inside a full row block and in the remainder rows keep their states and
    write zeros, exactly as the interpreter does, from given initial states."""
    mod = module(name, 32)
    cell, weights = mod.rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True, with_lengths=True)
    compiled = CompiledProgram(prog, schedule={layer_key(cell): {"tile_hidden": 8, "batch_block": 4,
                                                                 "workers": 2}})
    assert "alive ?" not in next(iter(compiled.sources.values()))
    x = torch.randn(6, 7, cell.input_size, generator=torch.Generator().manual_seed(6))
    lengths = torch.tensor([7, 2, 0, 5, 7, 3])  # full block [0, 4), remainder rows 4 and 5
    init = [s.unsqueeze(0) for s in states(cell, 6)]
    got = compiled(x, lengths, *init)
    want = prog.run(x, lengths, *init)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, "float32", "c", f"{name} output {i} with lengths vs interpreter")


def test_streaming_with_the_host_projection_recomputes_it_every_step() -> None:
    """``Stream.step`` swaps only the x/y pointers between steps; a hosted input projection must
    follow x, so stepping equals the whole sequence (and the interpreter)."""
    cell, weights = module("lstm", 16).rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    compiled = CompiledProgram(prog, schedule={layer_key(cell): {"host_gemm": 1, "batch_block": 2}})
    assert next(iter(compiled.builds.values())).kernel.meta["host_gemm"]
    x = torch.randn(2, 6, cell.input_size, generator=torch.Generator().manual_seed(7))
    stream = compiled.stream(batch=2)
    steps = torch.stack([stream.step(x[:, t])[0].clone() for t in range(x.shape[1])], dim=1)
    assert_close(steps, prog.run(x)[0], "float32", "c", "hosted projection, stepped vs interpreter")
