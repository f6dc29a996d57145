"""C dialect numerics: every cell vs the IR interpreter and the cell's plain-torch reference."""

from __future__ import annotations

import pytest
import torch
from cstyle_cases import module, states

from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close

CELL_NAMES = tuple(CELLS)


def _check(name: str, batch: int, steps: int, hidden: int, force_generic: bool = False) -> None:
    mod = module(name, hidden)
    cell, weights = mod.rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    compiled = CompiledProgram(prog, force_generic=force_generic)
    x = torch.randn(batch, steps, cell.input_size, generator=torch.Generator().manual_seed(2))
    init = states(cell, batch)
    lay = [s.unsqueeze(0) for s in init]
    got = compiled(x, *lay)
    want = prog.run(x, *lay)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, "float32", "c", f"{name} output {i} vs interpreter")
    ref_y, ref_states = CELLS[name].reference()(x, dict(weights), init, **mod.hparams())
    assert_close(got[0], ref_y, "float32", "c", f"{name} y vs reference")
    for i, (g, w) in enumerate(zip(got[1:], ref_states, strict=True)):
        assert_close(g[0], w, "float32", "c", f"{name} state {i} vs reference")


@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("batch,steps,hidden", [(1, 1, 16), (4, 9, 16), (4, 9, 64), (1, 9, 64)])
def test_cell_matches_interpreter_and_reference(name: str, batch: int, steps: int, hidden: int) -> None:
    _check(name, batch, steps, hidden)


@pytest.mark.slow
@pytest.mark.parametrize("name", CELL_NAMES)
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("steps", [1, 9])
@pytest.mark.parametrize("hidden", [16, 64])
def test_cell_sweep(name: str, batch: int, steps: int, hidden: int) -> None:
    _check(name, batch, steps, hidden)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_generic_path_matches_fused(name: str) -> None:
    """The per-sample generic lowering is the fallback for every cell; keep it honest on the
    gate cells too."""
    _check(name, 4, 9, 16, force_generic=True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_two_layer_bidirectional_with_lengths(kind: str, batch_first: bool) -> None:
    torch.manual_seed(0)
    ref = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(5, 16, num_layers=2, bidirectional=True,
                                                               batch_first=batch_first)
    mods = []
    for layer in range(2):
        row = []
        for sfx in ("", "_reverse"):
            m = CELLS[kind].load_module_class()(5 if layer == 0 else 32, 16)
            with torch.no_grad():
                for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(m, p).copy_(getattr(ref, f"{p}_l{layer}{sfx}"))
            row.append(m.rnnc_layer())
        mods.append(row)
    cells = [row[0][0] for row in mods]
    prog = rnn_program(cells, [[w for _, w in row] for row in mods], bidirectional=True,
                       batch_first=batch_first, with_lengths=True)
    compiled = CompiledProgram(prog)
    x = torch.randn(4, 9, 5) if batch_first else torch.randn(9, 4, 5)
    lengths = torch.tensor([9, 3, 1, 6])
    got = compiled(x, lengths)
    want = prog.run(x, lengths)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, "float32", "c", f"{kind} output {i}")
    with torch.no_grad():  # and against torch itself where lengths are full
        full = compiled(x, torch.tensor([9, 9, 9, 9]))
        y_t, _ = ref(x)
    assert_close(full[0], y_t, "float32", "c", f"{kind} vs torch.nn")


@pytest.mark.parametrize("name", ["lstm", "gru", "mamba", "slstm"])
def test_streaming_equals_full_sequence(name: str) -> None:
    mod = module(name, 16)
    cell, weights = mod.rnnc_layer()
    compiled = CompiledProgram(rnn_program([cell], [[weights]]))
    x = torch.randn(2, 12, cell.input_size)
    y_full, *final = compiled(x)
    stream = compiled.stream(batch=2)
    ys = []
    for t in range(8):  # one step at a time ...
        y_t, _ = stream.step(x[:, t])
        ys.append(y_t.clone())
        if t == 3:  # a full-sequence call in between must not disturb the stream's bound arguments
            compiled(x)
    y_chunk, st = stream.step(x[:, 8:])  # ... then a 4-step chunk (a 32 ms audio block)
    got = torch.cat([torch.stack(ys, 1), y_chunk], 1)
    assert_close(got, y_full, "float32", "c", f"{name} streamed y")
    for g, w in zip(st, final, strict=True):
        assert_close(g, w, "float32", "c", f"{name} streamed state")


def test_gpu_shaped_loop_nest_runs_in_c() -> None:
    """The CUDA kernel's loop nest (one output per thread, resident weights, one tile per worker),
    rendered in the C dialect: this is how the CUDA path's numerics are checked without a GPU."""
    from rnnc.backends.cstyle.program import build_kernel
    from rnnc.backends.cstyle.runtime import LayerRunner, RnnRunner
    from rnnc.lower import lower_layer
    from rnnc.targets import get

    for name in ("lstm", "gru", "slstm"):
        mod = module(name, 16)
        cell, weights = mod.rnnc_layer()
        kernel = lower_layer(cell, get("nvidia/a100-80gb"), name=f"gpu_nest_{name}")
        assert kernel.meta["knobs"]["reduce_inner"]
        b = build_kernel(kernel)
        runner = RnnRunner([[LayerRunner(kernel, b.fn, weights)]], [cell], batch_first=True)
        x = torch.randn(3, 7, cell.input_size)
        got = runner(x)
        want = rnn_program([cell], [[weights]]).run(x)
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, "float32", "c", f"{name} GPU-shaped nest")


def test_one_runner_drives_host_and_device_layers_alike() -> None:
    """``RnnRunner`` is the C and the CUDA dialects' one layer-stack runner: with ``device`` and
    ``store`` set (the CUDA path) it moves inputs there and outputs back. Driven here with CPU
    tensors and C layer kernels, so the device branch runs without a GPU; a bidirectional
    two-layer LSTM with initial states against the interpreter."""
    from rnnc.backends.cstyle.program import build_cell_kernel
    from rnnc.backends.cstyle.runtime import LayerRunner, RnnRunner

    torch.manual_seed(3)
    lstm = torch.nn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True).eval()
    cells = [CELLS["lstm"].build_cell(5 if k == 0 else 16, 8) for k in range(2)]
    builds = [build_cell_kernel(cell) for cell in cells]
    runners = [[LayerRunner(builds[k].kernel, builds[k].fn,
                            {p: getattr(lstm, f"{p}_l{k}{'_reverse' if d else ''}").detach() for p in cell.param_names})
                for d in range(2)] for k, cell in enumerate(cells)]
    x, h0, c0 = torch.randn(3, 6, 5), torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    with torch.no_grad():
        y, (h, c) = lstm(x, (h0, c0))  # torch itself is the reference
    for device, store in ((None, None), (torch.device("cpu"), torch.float32)):
        got = RnnRunner(runners, cells, batch_first=True, device=device, store=store)(x, None, [h0, c0])
        for g, w in zip(got, (y, h, c), strict=True):
            assert_close(g, w, "float32", "c", f"runner device={device}")
