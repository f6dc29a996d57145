"""Parallel-in-time evaluation by Newton's method (``rnnc.lower.newton``): GRU and LSTM at T=256
against torch itself with exact and diagonal Jacobians, a user cell (Jacobians come from its IR
step graph), bidirectional stacks, the sequential fallback when an iteration does not converge or
diverges (a warning, never a wrong answer), packed sequences, bad arguments, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import rnnc
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.frontend import Recurrent
from rnnc.ir import rnn_program
from rnnc.ir.printer import layer_cells
from rnnc.kernels import CELLS
from rnnc.lower.newton import NewtonProgram, solve
from rnnc.tolerances import assert_close


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("method", ["full", "diag"])
def test_matches_torch_at_t256(kind: str, method: str) -> None:
    torch.manual_seed(0)
    ref = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(8, 24, batch_first=True)
    x = torch.randn(2, 256, 8, generator=torch.Generator().manual_seed(1))
    program = rnnc.trace(ref, (x,))
    runner = NewtonProgram(program, dict.fromkeys(layer_cells(program), method))
    got = runner(x)
    with torch.no_grad():
        want = ref(x)
    assert_close(got[0], want[0], "float32", "scan", f"{kind} {method} y")
    info = next(iter(runner.info.values()))
    assert info.converged and info.method == method and 1 <= info.iterations < 256
    if method == "full":  # exact Newton: a handful of iterations
        assert info.iterations <= 8


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("method", ["full", "diag"])
def test_c_scan_matches_torch_at_t256(kind: str, method: str) -> None:
    """The same Newton iterations with each step's linear recurrence solved by the C chunked scan
    over threads (``rnnc.lower.newton_scan``): the answer is torch's, within the same tolerance."""
    torch.manual_seed(0)
    ref = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(8, 24, batch_first=True)
    x = torch.randn(2, 256, 8, generator=torch.Generator().manual_seed(1))
    compiled = rnnc.compile(ref, (x,), backend="c", time_parallel=f"newton-{method}")
    got = compiled(x)
    with torch.no_grad():
        want = ref(x)
    assert_close(got[0], want[0], "float32", "scan", f"{kind} {method} y (C scan)")
    info = next(iter(compiled.runner.info.values()))
    assert info.converged and "C chunked scan" in compiled.explain()


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 4, 5])
def test_c_scan_against_the_sequential_recurrence(full: bool, threads: int) -> None:
    """The scan alone, against the recurrence written out in float64: one step, lengths that leave
    the last workers without a chunk (T=5 on 4 workers: chunks of 2, the fourth idle; T=6 on 5),
    lengths not a multiple of the worker count."""
    from linear_recurrence import random_system, sequential

    from rnnc.backends.cstyle.newton_scan import CScan

    gen = torch.Generator().manual_seed(threads)
    scan = CScan(threads=threads)
    for steps in (1, 3, 5, 6, 64, 101):
        a, b = random_system(steps, 3, 5, full, gen)
        assert_close(scan(a, b, full), sequential(a, b, full), "float32", "c", f"T={steps} W={threads}")


def test_c_scan_of_a_wide_state_does_not_live_on_the_thread_stacks() -> None:
    """D = 1500: one [D, D] coefficient copy per worker is 9 MB, past a thread's 8 MB stack (it
    crashed when the copy was a stack array); the scratch is the runner's heap buffer now."""
    from linear_recurrence import sequential

    from rnnc.backends.cstyle.newton_scan import CScan

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 1, 1500, 1500, generator=gen) / 1500 ** 0.5
    b = torch.randn(2, 1, 1500, generator=gen)
    assert_close(CScan(threads=2)(a, b, True), sequential(a, b, True), "float32", "c", "D=1500")


def test_compile_picks_a_method_and_explains() -> None:
    torch.manual_seed(0)
    ref = torch.nn.GRU(6, 16, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 96, 6)
    compiled = rnnc.compile(ref, (x,), time_parallel="newton")
    got = compiled(x)
    with torch.no_grad():
        want = ref(x)
    assert_close(got[0], want[0], "float32", "scan", "bidirectional GRU y")
    assert_close(got[1], want[1], "float32", "scan", "bidirectional GRU h")
    text = compiled.explain()
    assert text.startswith("backend newton") and "measured on the example inputs" in text
    assert text.count("iterations, residual") == 4  # two layers, two directions


class Decay(torch.nn.Module):
    """A user cell: h' = tanh(W x + U h) * sigmoid(V x) + 0.5 h."""

    def __init__(self, hidden: int = 12) -> None:
        super().__init__()
        self.w, self.v = torch.nn.Linear(5, hidden), torch.nn.Linear(5, hidden)
        self.u = torch.nn.Linear(hidden, hidden, bias=False)

    def forward(self, x, h):
        h = torch.tanh(self.w(x) + self.u(h)) * torch.sigmoid(self.v(x)) + 0.5 * h
        return h, h


def test_user_cell_gets_its_jacobians_from_the_ir() -> None:
    torch.manual_seed(2)
    layer = Recurrent(Decay(), [(12,)], input_size=5)
    x = torch.randn(3, 80, 5)
    compiled = rnnc.compile(layer, (x,), time_parallel="newton")
    with torch.no_grad():
        want = layer(x)
    assert_close(compiled(x)[0], want[0], "float32", "scan", "user cell y")
    wider = Recurrent(Decay(16), [(16,)], input_size=5)  # the CPU tiling model needs whole vectors of gate rows
    compiled = rnnc.compile(wider, (x,), time_parallel="newton-full")
    compiled(x)
    assert "on cpu/host: " in compiled.explain() and "(estimate: sequential" in compiled.explain()


def test_no_convergence_falls_back_step_by_step_with_a_warning() -> None:
    torch.manual_seed(3)
    cell, weights = CELLS["gru"].load_module_class()(4, 8).rnnc_layer()
    x = torch.randn(40, 2, 4)
    init = [torch.zeros(2, 8)]
    with pytest.warns(UserWarning, match="did not converge in 1 iterations"):
        y, finals, info = solve(cell, weights, x, init, "diag", max_iter=1)
    assert not info.converged
    program = rnn_program([cell], [[weights]])
    assert_close(y, program.run(x.transpose(0, 1).contiguous())[0].transpose(0, 1), "float32", "scan", "fallback")


def test_divergence_falls_back_too() -> None:
    """sLSTM's exponential gates make exact Newton's Jacobian products overflow: detected at once."""
    torch.manual_seed(4)
    module = CELLS["slstm"].load_module_class()(6, 16, num_heads=2)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(4.0)
    cell, weights = module.rnnc_layer()
    x = torch.randn(200, 2, 6) * 3
    init = [torch.zeros(2, *s.shape) for s in cell.states]
    with pytest.warns(UserWarning, match="finished step by step"):
        y, _, info = solve(cell, weights, x, init, "full")
    assert not info.converged and info.iterations < 200
    with torch.no_grad():
        want = module(x.transpose(0, 1))[0]
    assert_close(y.transpose(0, 1), want, "float32", "scan", "sLSTM after fallback")


def test_packed_sequences_run_step_by_step() -> None:
    torch.manual_seed(5)
    cell, weights = CELLS["lstm"].load_module_class()(4, 8).rnnc_layer()
    program = rnn_program([cell], [[weights]], with_lengths=True)
    x, lengths = torch.randn(3, 20, 4), torch.tensor([20, 7, 12])
    runner = NewtonProgram(program, {})
    for g, w in zip(runner(x, lengths), program.run(x, lengths), strict=True):
        assert_close(g, w, "float32", "scan", "packed")
    assert "sequential" in next(iter(runner.info.values())).method


def test_bad_arguments() -> None:
    cell, weights = CELLS["gru"].load_module_class()(4, 8).rnnc_layer()
    x, init = torch.randn(5, 1, 4), [torch.zeros(1, 8)]
    with pytest.raises(UserInputError, match="unknown Newton method"):
        solve(cell, weights, x, init, "chord")
    with pytest.raises(UserInputError, match="damping"):
        solve(cell, weights, x, init, "full", damping=0.0)
    gru = torch.nn.GRU(4, 8)
    with pytest.raises(UserInputError, match="unknown time_parallel"):
        rnnc.compile(gru, (torch.randn(5, 1, 4),), time_parallel="jacobi")
    with pytest.raises(UnsupportedError, match="no parallel-in-time kernel yet"):
        rnnc.compile(gru, (torch.randn(5, 1, 4),), backend="tvm", time_parallel="newton")
    fixed = rnnc.compile(gru, (torch.randn(5, 1, 4),), time_parallel="newton-diag")
    assert "Newton diag (asked for)" in fixed.explain() and set(fixed.runner.methods.values()) == {"diag"}


@pytest.mark.parametrize("scan", ["torch", "c"])
def test_cli_writes_a_loadable_directory(tmp_path, scan: str) -> None:  # noqa: ANN001 - pytest fixture
    src = tmp_path / "m.py"
    src.write_text("import torch\ntorch.manual_seed(0)\nmodel = torch.nn.GRU(4, 8, batch_first=True)\n")
    out = tmp_path / "out"
    backend = ["--backend", "c"] if scan == "c" else []
    proc = subprocess.run([sys.executable, "-m", "rnnc", "compile", str(src), "--input-shape", "2,30,4",
                           "--time-parallel", "newton", *backend, "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded = rnnc.load(out)
    assert getattr(loaded.scan, "name", "torch") == scan
    torch.manual_seed(0)
    ref = torch.nn.GRU(4, 8, batch_first=True)
    x = torch.randn(2, 50, 4)
    with torch.no_grad():
        assert_close(loaded(x)[0], ref(x)[0], "float32", "scan", "loaded newton dir")


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_short_sequences_converge_without_a_warning(steps: int) -> None:
    """T iterations make the answer exact: a short sequence that needs all of them still converged."""
    import warnings

    torch.manual_seed(6)
    cell, weights = CELLS["gru"].load_module_class()(4, 8).rnnc_layer()
    x = torch.randn(steps, 2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _, info = solve(cell, weights, x, [torch.zeros(2, 8)], "full")
    assert info.converged and info.iterations <= steps
    program = rnn_program([cell], [[weights]])
    assert_close(y, program.run(x.transpose(0, 1).contiguous())[0].transpose(0, 1), "float32", "scan", "short")


@pytest.mark.parametrize("backend", [None, "c"])
def test_block_jacobians_group_each_unit_and_match_torch(backend: str | None) -> None:
    """``block``: an LSTM unit's (h, c) pair as one 2 x 2 block -- fewer iterations than ``diag``,
    the same answer as torch, through the torch and the C scan."""
    torch.manual_seed(0)
    ref = torch.nn.LSTM(8, 24, batch_first=True)
    x = torch.randn(2, 256, 8, generator=torch.Generator().manual_seed(1))
    iterations = {}
    for method in ("diag", "block"):
        compiled = rnnc.compile(ref, (x,), backend=backend, time_parallel=f"newton-{method}")
        got = compiled(x)
        with torch.no_grad():
            assert_close(got[0], ref(x)[0], "float32", "scan", f"LSTM {method}")
        (info,) = compiled.runner.info.values()
        assert info.converged and info.method == method
        iterations[method] = info.iterations
    assert iterations["block"] < iterations["diag"]


def test_block_layout_follows_heads_and_declines_mixed_states() -> None:
    from rnnc.lower.newton import block_layout

    slstm = CELLS["slstm"].load_module_class()(4, 16, num_heads=4).rnnc_layer()[0]
    perm, k = block_layout(slstm)
    assert k == 4 * 4 and sorted(perm.tolist()) == list(range(4 * 16))  # a head's 4 units x 4 states
    assert perm[:k].tolist() == [s * 16 + u for u in range(4) for s in range(4)]
    lstm = CELLS["lstm"].load_module_class()(4, 8).rnnc_layer()[0]
    assert block_layout(lstm)[1] == 2 and block_layout(lstm, 4)[1] == 8
    with pytest.raises(UserInputError, match="does not divide"):
        block_layout(lstm, 3)
    mlstm = CELLS["mlstm"].load_module_class()(4, 8).rnnc_layer()[0]
    with pytest.raises(UnsupportedError, match="vectors of one width"):
        block_layout(mlstm)
    with pytest.raises(UnsupportedError, match="vectors of one width"):
        rnnc.compile(CELLS["mlstm"].load_module_class()(4, 8), (torch.randn(1, 5, 4),), time_parallel="newton-block")


def test_a_corrupted_scan_name_is_one_clear_error(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    import json

    from rnnc.backends import get_backend

    gru = torch.nn.GRU(4, 8, batch_first=True)
    program = rnnc.trace(gru, (torch.randn(1, 6, 4),))
    get_backend("newton").compile(program, "cpu/host", str(tmp_path), scan="c")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["scan"] = "fpga"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserInputError, match="unknown Newton scan 'fpga'"):
        rnnc.load(tmp_path)
