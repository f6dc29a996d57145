"""The scan form is derived from the step graph, not from the cell's name: a user-written linear
cell scans too, one whose update is not affine/max-plus in its state is declined with the reason,
and the stages/components of the built-in cells follow from their equations."""

from __future__ import annotations

import pytest
import torch
from triton_cases import program

from rnnc.backends import get_backend
from rnnc.backends.triton import compile_program
from rnnc.errors import UnsupportedError
from rnnc.ir import Cell, GraphBuilder, StateSpec, rnn_program
from rnnc.ir.scanform import plan_scan
from rnnc.tolerances import assert_close

IN, HID = 5, 8


def _user_cell(nonlinear_in_state: bool) -> tuple[Cell, dict[str, torch.Tensor]]:
    """A gated decay cell marked ``linear``: h' = d * h + (1 - d) * tanh(c), y = sigmoid(g) * h'
    (or, when ``nonlinear_in_state``, h' = d * tanh(h) + ..., which no scan can run)."""
    b = GraphBuilder("user_step")
    x = b.input("x", ("B", IN))
    h = b.input("h", ("B", HID))
    w = b.param("w", (3 * HID, IN))
    d_pre, c, g = b.split(b.linear(x, w), axis=-1, sizes=(HID, HID, HID))
    d = b.exp(-b.softplus(d_pre))
    carried = b.tanh(h) if nonlinear_in_state else h
    h_new = d * carried + (1.0 - d) * b.tanh(c)
    step = b.build({"y": b.sigmoid(g) * h_new, "h": h_new})
    cell = Cell("user_decay", "linear", IN, HID, HID, (StateSpec("h", (HID,), "float32"),), step, ())
    return cell, {"w": torch.randn(3 * HID, IN, generator=torch.Generator().manual_seed(2))}


def test_user_written_linear_cell_runs_as_a_scan() -> None:
    cell, weights = _user_cell(False)
    prog = rnn_program([cell], [[weights]], with_states=True, with_lengths=True)
    x = torch.randn(3, 7, IN, generator=torch.Generator().manual_seed(4))
    h0 = torch.randn(1, 3, HID, generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([7, 2, 5])
    got = compile_program(prog)(x, lengths, h0)
    for g, w, what in zip(got, prog.run(x, lengths, h0), ("y", "h"), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", f"user linear cell {what}")


def test_linear_cell_not_affine_in_its_state_is_declined() -> None:
    cell, weights = _user_cell(True)
    prog = rnn_program([cell], [[weights]])
    ok, why = get_backend("triton").supports(prog)
    assert not ok and "user_decay" in why and "'tanh'" in why and "affine" in why
    with pytest.raises(UnsupportedError, match="chunked scan"):
        compile_program(prog)


@pytest.mark.parametrize("name,stages", [
    ("mingru", [[("affine", ("h",))]]),
    ("lru", [[("affine", ("h_re", "h_im"))]]),  # complex diagonal: one 2x2 component
    ("mamba", [[("affine", ("h",))]]),
    ("mlstm", [[("maxplus", ("m",))], [("affine", ("C",)), ("affine", ("n",))]]),  # stabiliser first
])
def test_scan_stages_follow_from_the_equations(name: str, stages: list) -> None:
    cell = program(name, 16)[0].rnn_nodes()[0].attr("cells")[0]
    plan = plan_scan(cell)
    assert [[(c.kind, c.states) for c in stage] for stage in plan.stages] == stages
