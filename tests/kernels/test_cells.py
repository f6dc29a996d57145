"""Every registered cell: IR interpreter == plain-torch reference, over a sweep.

The nn.Module's ``forward`` *is* the reference (``RnncLayer.forward`` calls it on the module's
own parameters), so module-vs-reference here would compare the reference with itself; the modules
are held against outside oracles in ``test_torch_oracles.py`` (torch.nn.LSTM/GRU/RNN) and
``test_paper_oracles.py`` (numpy float64 oracles from the papers for minGRU, minLSTM, LRU, Mamba
and mLSTM), and sLSTM against its unstabilised paper form below."""

from __future__ import annotations

import itertools

import pytest
import torch
from kernel_cases import INPUT_SIZE, make_module, random_states, run_ir

from rnnc.ir import Program, rnn_program
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close

BATCHES, STEPS, HIDDENS = (1, 3), (1, 7, 64), (8, 33, 128)


def _sweep() -> list:
    cases = []
    for name, b, t, h, given in itertools.product(CELLS, BATCHES, STEPS, HIDDENS, (False, True)):
        heavy = t == 64 and h == 128 and (b == 1 or given)
        marks = [pytest.mark.slow] if heavy else []
        case_id = f"{name}-B{b}-T{t}-H{h}-{'s0' if given else 'z'}"
        cases.append(pytest.param(name, b, t, h, given, marks=marks, id=case_id))
    return cases


@pytest.mark.parametrize(("name", "batch", "steps", "hidden", "given"), _sweep())
def test_interpreter_matches_reference(name: str, batch: int, steps: int, hidden: int, given: bool) -> None:
    module = make_module(name, hidden)
    x = torch.randn(batch, steps, INPUT_SIZE, generator=torch.Generator().manual_seed(2))
    state = random_states(module, batch) if given else None
    reference = CELLS[name].reference()
    # the module runs the registry's reference (what users train is what the IR is checked against)
    assert type(module)._reference is reference
    with torch.no_grad():
        want_y, want_states = reference(x, dict(module.named_parameters()), state, **module.hparams())
    got_y, got_states = run_ir(module, x, state)
    assert len(got_states) == len(want_states)
    assert_close(got_y, want_y, "float32", "interp", f"{name} y")
    for i, (g, w) in enumerate(zip(got_states, want_states, strict=True)):
        assert_close(g, w, "float32", "interp", f"{name} state {i}")


@pytest.mark.parametrize("name", list(CELLS))
def test_float64_cells(name: str) -> None:
    """A float64 module gives a float64 cell whose interpretation agrees to float64 precision."""
    module = make_module(name, 12).double()
    cell, weights = module.rnnc_layer()
    assert cell.step.inputs[0][1].dtype == "float64"
    assert all(w.dtype == torch.float64 for w in weights.values())
    x = torch.randn(2, 9, INPUT_SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    state = random_states(module, 2)
    with torch.no_grad():
        want_y, want_states = module(x, state)
    got_y, got_states = run_ir(module, x, state)
    assert_close(got_y, want_y, "float64", "interp", name)
    for g, w in zip(got_states, want_states, strict=True):
        assert_close(g, w, "float64", "interp", name)


@pytest.mark.parametrize("name", list(CELLS))
def test_rnnc_layer_protocol(name: str) -> None:
    """The frontend's contract: (Cell, detached weights keyed by IR param names == module names)."""
    module = make_module(name, 8)
    cell, weights = module.rnnc_layer()
    assert cell.kind == name
    assert cell.recurrence == CELLS[name].recurrence
    assert set(weights) == set(cell.param_names) == {n for n, _ in module.named_parameters()}
    params = dict(cell.step.params)
    for pname, w in weights.items():
        assert not w.requires_grad
        assert tuple(w.shape) == params[pname].shape, pname
        assert w.data_ptr() == getattr(module, pname).data_ptr()  # shared, not copied
    assert CELLS[name].build_cell(cell.input_size, cell.hidden_size, **module.hparams()) == cell


@pytest.mark.parametrize("name", list(CELLS))
def test_program_text_round_trips(name: str) -> None:
    """New ops (cos/sin for LRU) and every cell's step graph survive printing and parsing."""
    module = make_module(name, 8)
    cell, weights = module.rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    again = Program.parse(prog.text(), prog.weights)
    assert again == prog
    assert again.hash() == prog.hash()


@pytest.mark.parametrize("name", list(CELLS))
def test_module_trains(name: str) -> None:
    """Gradients reach every parameter through forward (the reference is differentiable)."""
    module = make_module(name, 8)
    x = torch.randn(2, 5, INPUT_SIZE, generator=torch.Generator().manual_seed(4))
    y, states = module(x)
    (y.square().mean() + sum(s.float().square().mean() for s in states)).backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_slstm_stabiliser_leaves_the_paper_equations_unchanged(forget_gate: str) -> None:
    """sLSTM has no torch oracle; hold its stabilised loop against the paper's unstabilised form
    (i = exp(ĩ), c = f c + i z, n = f n + i, h = o c / n) in float64 on a short sequence, and
    check the stabilised states are the unstabilised ones scaled by exp(-m)."""
    module = make_module("slstm", 12, forget_gate=forget_gate).double()
    params = {k: v.detach() for k, v in module.named_parameters()}
    x = torch.randn(2, 12, INPUT_SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    y, (h, c, n, m) = CELLS["slstm"].reference()(x, params, None, **module.hparams())
    nh, dh = module.num_heads, 12 // module.num_heads
    r = params["weight_hh"]
    hb = cb = nb = x.new_zeros(2, 12)
    for t in range(x.shape[1]):
        rec = torch.stack([torch.cat([hb[:, k * dh:(k + 1) * dh] @ r[g, k] for k in range(nh)], dim=-1)
                           for g in range(4)], dim=1).reshape(2, 48)
        i_p, f_p, z_p, o_p = (x[:, t] @ params["weight_ih"].T + params["bias"] + rec).chunk(4, dim=-1)
        f = torch.sigmoid(f_p) if forget_gate == "sigmoid" else torch.exp(f_p)
        cb = f * cb + torch.exp(i_p) * torch.tanh(z_p)
        nb = f * nb + torch.exp(i_p)
        hb = torch.sigmoid(o_p) * cb / nb
        assert_close(y[:, t], hb, "float64", "reference", f"h at step {t}")
    assert_close(c * torch.exp(m), cb, "float64", "reference", "c")
    assert_close(n * torch.exp(m), nb, "float64", "reference", "n")
