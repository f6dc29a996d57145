"""Multi-block fused kernels (issue 4 follow-up): nonlinear cells whose recurrent weights do not fit
one program are split over ``hidden / hidden_tile`` programs per batch tile that exchange the state
through global memory every step.

Here (no GPU) the per-step launch variant runs in the interpreter and is checked against the IR
interpreter and the cell's reference module; the persistent grid-synchronised variant is compiled
ahead of time for sm_80/sm_90 and checked against the solver's prediction; its numerics on a GPU
carry the ``gpu`` marker."""

from __future__ import annotations

import json

import pytest
import torch
from triton_cases import INPUT, program, states

from rnnc.backends import get_backend
from rnnc.backends.triton import TRITON_BACKEND, schedule_for
from rnnc.backends.triton.aot import TOLERANCE, allocated, fit_schedule
from rnnc.backends.triton.runtime import TritonProgram, layer_kernel, persistent_ok
from rnnc.errors import UnsupportedError
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.targets import get
from rnnc.tolerances import assert_close

SHAPES = [(b, t) for b in (1, 4) for t in (1, 9)]


def _single_head_slstm(hidden: int) -> tuple[object, list]:
    """sLSTM with one head (its dense recurrent weight can be split over hidden blocks)."""
    torch.manual_seed(0)
    mod = CELLS["slstm"].load_module_class()(INPUT, hidden, num_heads=1)
    cell, weights = mod.rnnc_layer()
    return rnn_program([cell], [[weights]], with_states=True), [[mod]]


def _check(name: str, hidden: int, hidden_tile: int, shapes: list[tuple[int, int]], batch_tile: int = 2) -> None:
    prog, mods = _single_head_slstm(hidden) if name == "slstm" else program(name, hidden, with_states=True)
    node = prog.rnn_nodes()[0]
    cell = node.attr("cells")[0]
    lk = layer_kernel(cell, batch_tile, 4, hidden_tile=hidden_tile)
    assert lk.multi_block and lk.plan.blocks == hidden // hidden_tile
    fn = TritonProgram(prog, {node.outputs[0]: [lk]})
    for batch, steps in shapes:
        x = torch.randn(batch, steps, INPUT, generator=torch.Generator().manual_seed(batch * 100 + steps))
        init = states(cell, 1, batch)
        got = [g.cpu() for g in fn(x, *init)]
        label = f"{name} H={hidden} tile={hidden_tile} B={batch} T={steps}"
        for g, w, what in zip(got, prog.run(x, *init), ("y", *cell.state_names), strict=True):
            assert_close(g, w, "float32", "triton", f"{label} {what} vs interpreter")
        y_ref, s_ref = mods[0][0](x, tuple(s[0] for s in init))
        assert_close(got[0], y_ref, "float32", "triton", f"{label} y vs reference")
        for g, r, what in zip(got[1:], s_ref, cell.state_names, strict=True):
            assert_close(g[0], r, "float32", "triton", f"{label} {what} vs reference")


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_multi_block_matches_reference(name: str) -> None:
    """H=32 split into two programs of 16 units (batch tile 2: B=4 also spans two batch tiles)."""
    _check(name, 32, 16, SHAPES)


def test_multi_block_slstm_four_blocks() -> None:
    """sLSTM (4 states, exponential gating) over four blocks of 8 units."""
    _check("slstm", 32, 8, [(1, 9), (4, 9)])


def test_multi_block_reverse_with_lengths() -> None:
    """Reverse direction and packed lengths: each block holds its state columns past a sequence's end."""
    prog, _ = program("gru", 32, layers=1, bidirectional=True, with_states=True, with_lengths=True)
    node = prog.rnn_nodes()[0]
    cell = node.attr("cells")[0]
    fn = TritonProgram(prog, {node.outputs[0]: [layer_kernel(cell, 4, 4, hidden_tile=8)]})
    x = torch.randn(3, 7, INPUT, generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([7, 2, 5])
    init = states(cell, 2, 3)
    for g, w, what in zip(fn(x, lengths, *init), prog.run(x, lengths, *init), ("y", "h"), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", f"gru multi-block bidirectional {what}")


def test_split_needs_whole_hidden_groups() -> None:
    """A hidden tile that does not divide H is refused with the reason, not rendered wrong."""
    cell = program("lstm", 32)[0].rnn_nodes()[0].attr("cells")[0]
    with pytest.raises(UnsupportedError, match="hidden tile 12"):
        layer_kernel(cell, 1, 4, hidden_tile=12)


def test_interpreter_never_takes_the_persistent_launch() -> None:
    """Under TRITON_INTERPRET (programs run one after another) a spin barrier would deadlock."""
    cell = program("lstm", 32)[0].rnn_nodes()[0].attr("cells")[0]
    assert not persistent_ok(layer_kernel(cell, 1, 4, hidden_tile=16), 1, torch.device("cpu"))[0]


H100_SM = {"regs": 65536, "shared": 233472, "threads": 2048}  # per SM, CUDA programming guide table


@pytest.mark.parametrize("regs,shared,warps,want", [
    (128, 0, 4, 4),          # registers: 128 x 32 = 4096 per warp, 16 warps per SM, 4 blocks of 4
    (255, 0, 8, 1),          # 255 -> 8192 per warp (256-unit granules): 8 warps, one block of 8
    (32, 100 * 1024, 4, 2),  # shared memory: two 100 KiB blocks (+1 KiB reserved each) in 228 KiB
    (32, 76 * 1024, 4, 2),   # 3 x 76 KiB = 228 KiB exactly, but with the reserved KiB only 2 fit
    (16, 0, 1, 32),          # block slots: 64 one-warp blocks by threads, 32 by the hardware cap
    (16, 0, 16, 4),          # threads: 2048 / 512 (registers would allow 8)
])
def test_coresident_blocks(regs: int, shared: int, warps: int, want: int) -> None:
    """The occupancy arithmetic the persistent launch checks before risking a grid barrier,
    against hand-worked cases (each limited by a different resource)."""
    from rnnc.backends.triton.runtime import coresident_blocks

    assert coresident_blocks(regs, shared, warps, H100_SM) == want


def test_fallback_is_reported_by_explain() -> None:
    """A multi-block layer's launch decision (here the interpreter's per-step launches) is in
    ``explain_lines``, never silent."""
    from rnnc.backends.triton import compile_program

    prog, _ = program("gru", 512)
    fn = compile_program(prog, "nvidia/h100-sxm", batch=1)
    assert any(lk.multi_block for lks in fn.kernels.values() for lk in lks)
    fn(torch.randn(1, 2, INPUT, generator=torch.Generator().manual_seed(0)))
    lines = fn.explain_lines()
    # the interpreter never takes the persistent launch; on a GPU either outcome, with its reason
    reason = "persistent:" if torch.cuda.is_available() else "grid barrier cannot be passed"
    assert lines and all(reason in ln or "one launch per step" in ln for ln in lines), lines


@pytest.mark.parametrize("name,hidden", [("lstm", 128), ("gru", 256), ("elman", 256), ("lstm", 512)])
def test_solver_is_asked_for_multi_block(name: str, hidden: int) -> None:
    """Past what one block holds, schedule_for returns the solver's grid-synchronised schedule and
    its grid fits the persistent launch (one block per SM)."""
    target = get("nvidia/h100-sxm")
    cell = program(name, hidden)[0].rnn_nodes()[0].attr("cells")[0]
    sched = schedule_for(cell, target, batch=4)
    assert sched.param("grid_sync") == 1 and sched.param("blocks_per_head") > 1
    assert sched.param("blocks_per_head") * sched.param("hidden_tile") == hidden
    assert sched.resources.blocks <= target.gpu.sm_count
    assert TRITON_BACKEND.supports(program(name, hidden)[0], target) == (True, "")


@pytest.mark.slow
@pytest.mark.parametrize("name,hidden,cc", [("lstm", 256, 80), ("lstm", 256, 90), ("gru", 128, 90)])
def test_persistent_variant_compiles_within_prediction(name: str, hidden: int, cc: int) -> None:
    """The persistent (grid-sync) kernel AOT-compiles spill-free, within 10 % of the solver after feedback."""
    target = get({80: "nvidia/a100-80gb", 90: "nvidia/h100-sxm"}[cc])
    cell = program(name, hidden)[0].rnn_nodes()[0].attr("cells")[0]
    fit = fit_schedule(cell, target, cc, batch=4)
    res, pred = fit.measured, fit.schedule.resources.registers_per_thread
    assert fit.schedule.param("blocks_per_head") > 1, fit.rounds
    assert res.spill_stores == 0 and res.spill_loads == 0, fit.rounds
    assert fit.converged and abs(allocated(res.registers_per_thread) - pred) <= TOLERANCE * pred, fit.rounds
    assert res.shared_memory_per_block <= target.gpu.shared_memory_per_block_optin_bytes


@pytest.mark.slow
def test_compile_lstm_512_for_h100(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    """``rnnc compile --backend triton`` accepts LSTM H=512 on nvidia/h100-sxm; the manifest records
    the multi-block variant and its grid; the loaded output directory computes the layer."""
    prog, _ = program("lstm", 512)
    get_backend("triton").compile(prog, get("nvidia/h100-sxm"), str(tmp_path), batch=4)
    entry = next(iter(json.loads((tmp_path / "manifest.json").read_text())["layers"].values()))
    assert entry["path"] == "fused multi-block" and entry["variant"] == "persistent grid-sync"
    assert entry["grid"][1] == 512 // entry["knobs"]["hidden_tile"] > 1
    sm90 = entry["resources"]["sm_90"]
    assert sm90["spill_stores"] == 0 and sm90["spill_loads"] == 0
    # rnnc.load rebuilds the same split; here it runs the per-step variant in the interpreter
    loaded = get_backend("triton").load(str(tmp_path))
    x = torch.randn(1, 2, INPUT, generator=torch.Generator().manual_seed(2))
    for got, want in zip(loaded(x), prog.run(x), strict=True):
        assert_close(got.cpu(), want, "float32", "triton", "lstm H=512 loaded from the output directory")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_persistent_variant_on_gpu(name: str) -> None:
    """On a GPU the persistent launch (grid barrier per step) matches the IR interpreter, at the
    fed-back multi-block schedule for H=256 (one batch tile, 128 blocks of 2 units) and
    T long enough to stress the double buffer's slot reuse."""
    from rnnc.backends.triton import compile_program

    prog, _ = program(name, 256, with_states=True)
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    fn = compile_program(prog, "nvidia/h100-sxm", batch=1)
    lk = fn.kernels[prog.rnn_nodes()[0].outputs[0]][0]
    # batch 1: the solver's grid for nvidia/h100-sxm (<= its 132 SMs), which must all be co-resident
    assert lk.multi_block, lk.knobs
    # a GPU with fewer SMs than the schedule's programs (e.g. an H100 PCIe, 114) cannot hold them all
    # co-resident: the runtime takes the per-step fallback there, which must be just as right
    variant = "persistent" if persistent_ok(lk, 1, torch.device("cuda"))[0] else "per-step fallback"
    x = torch.randn(1, 64, INPUT, generator=torch.Generator().manual_seed(11))
    init = states(cell, 1, 1)
    got = [g.cpu() for g in fn(x, *init)]
    for g, w, what in zip(got, prog.run(x, *init), ("y", *cell.state_names), strict=True):
        assert_close(g, w, "float32", "triton", f"{name} H=256 {variant} {what}")
