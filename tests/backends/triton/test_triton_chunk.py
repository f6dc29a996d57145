"""The chunkwise Triton kernel of the matrix-state family (GLA, RetNet, HGRN2, DeltaNet, Gated
DeltaNet, Mamba-2), run in the interpreter here: against the nn.Module (the plain step loop) at
lengths that are not a chunk multiple, T = 1, a long T, initial states, several chunk sizes and
value tiles, packed lengths and both directions -- and the chunk form's verification in the
layer plan, which is what lets the kernel trust the cell's operand names."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from rnnc.backends.triton import compile_program
from rnnc.backends.triton.runtime import layer_kernel, run_layer
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.passes import plan_layer
from rnnc.tolerances import assert_close

IN = 6
VARIANTS = {"gla": {}, "retnet": {}, "hgrn2": {}, "deltanet": {}, "gated-deltanet": {"gated": True},
            "mamba2": {"state_size": 5}}


def _module(variant: str, hidden: int = 16, heads: int = 2) -> torch.nn.Module:
    torch.manual_seed(3)
    name = variant.removeprefix("gated-")
    return CELLS[name].load_module_class()(IN, hidden, num_heads=heads, **VARIANTS[variant])


@pytest.mark.parametrize(("variant", "steps", "chunk"), list(itertools.product(VARIANTS, (1, 37, 130), (16, 64))))
def test_chunk_kernel_matches_the_module(variant: str, steps: int, chunk: int) -> None:
    module = _module(variant)
    cell, weights = module.rnnc_layer()
    x = torch.randn(steps, 3, IN, generator=torch.Generator().manual_seed(steps))
    s0 = torch.randn(3, *cell.states[0].shape, generator=torch.Generator().manual_seed(1)) * 0.5
    lk = layer_kernel(cell, chunk=chunk, tile=16)
    assert lk.is_chunk
    y, (s,) = run_layer(lk, x, dict(weights), [s0], None, reverse=False)
    with torch.no_grad():
        want_y, (want_s,) = module(x.transpose(0, 1), (s0,))
    assert_close(y.transpose(0, 1), want_y, "float32", "triton", f"{variant} y")
    assert_close(s, want_s, "float32", "triton", f"{variant} S")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_value_tiles_and_wide_heads(variant: str) -> None:
    """A value width of 40 per head: three 16-wide value tiles, the last one partial."""
    module = _module(variant, hidden=80, heads=2)
    cell, weights = module.rnnc_layer()
    x = torch.randn(21, 2, IN, generator=torch.Generator().manual_seed(5))
    s0 = torch.zeros(2, *cell.states[0].shape)
    y, (s,) = run_layer(layer_kernel(cell, chunk=16, tile=16), x, dict(weights), [s0], None, reverse=False)
    with torch.no_grad():
        want_y, (want_s,) = module(x.transpose(0, 1))
    assert_close(y.transpose(0, 1), want_y, "float32", "triton", f"{variant} y")
    assert_close(s, want_s, "float32", "triton", f"{variant} S")


@pytest.mark.parametrize("variant", ["gla", "gated-deltanet", "mamba2", "mlstm"])
def test_bidirectional_packed_program_matches_the_interpreter(variant: str) -> None:
    """Two layers, both directions, per-sequence lengths: the whole Program against the IR."""
    if variant == "mlstm":
        mods = [[_mlstm() for _ in range(2)], [_mlstm(width=32) for _ in range(2)]]
    else:
        mods = [[_module(variant) for _ in range(2)]]
        torch.manual_seed(9)
        mods.append([CELLS[variant.removeprefix("gated-")].load_module_class()(2 * 16, 16, num_heads=2,
                                                                               **VARIANTS[variant]) for _ in range(2)])
    built = [[m.rnnc_layer() for m in row] for row in mods]
    prog = rnn_program([row[0][0] for row in built], [[w for _, w in row] for row in built], bidirectional=True,
                       with_lengths=True)
    x = torch.randn(3, 29, IN, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([29, 11, 17])
    got = compile_program(prog)(x, lengths)
    for k, (g, w) in enumerate(zip(got, prog.run(x, lengths), strict=True)):  # y, then every state
        assert_close(g.cpu(), w, "float32", "triton", f"{variant} output {k}")


def test_a_wrong_chunk_claim_is_caught_and_the_cell_runs_as_before() -> None:
    """The cell's ``chunk`` attribute naming q where k belongs is refuted by the layer plan's
    float64 step check, so no backend runs the (wrong) chunk form."""
    cell, _ = _module("gla").rnnc_layer()
    attrs = dict(cell.attrs)
    words = dict(p.split("=") for p in attrs["chunk"].split()[1:])
    swapped = attrs["chunk"].replace(f"q={words['q']}", "q=@").replace(f"k={words['k']}", f"k={words['q']}")
    bad = dataclasses.replace(cell, attrs=tuple((k, swapped.replace("q=@", f"q={words['k']}") if k == "chunk" else v)
                                                for k, v in cell.attrs))
    plan = plan_layer(bad)
    assert plan.chunk is None and "not the gla update" in plan.chunk_reason
    assert not layer_kernel(bad).is_chunk
    assert plan_layer(cell).chunk is not None and not plan_layer(cell).chunk_reason


def test_empty_sequence() -> None:
    cell, weights = _module("deltanet").rnnc_layer()
    s0 = torch.randn(3, *cell.states[0].shape)
    y, (s,) = run_layer(layer_kernel(cell), torch.randn(0, 3, IN), dict(weights), [s0], None, reverse=False)
    assert y.shape == (0, 3, 16) and torch.equal(s, s0)


def _mlstm(hidden: int = 16, width: int = IN, forget_gate: str = "sigmoid") -> torch.nn.Module:
    torch.manual_seed(5)
    return CELLS["mlstm"].load_module_class()(width, hidden, num_heads=2, forget_gate=forget_gate)


@pytest.mark.parametrize(("steps", "chunk", "hidden", "gate"), [(1, 16, 16, "sigmoid"), (37, 16, 16, "sigmoid"),
                                                         (37, 16, 16, "exp"), (130, 64, 16, "sigmoid"),
                                                         (21, 16, 80, "sigmoid")])
def test_mlstm_chunk_kernel_matches_the_module(steps: int, chunk: int, hidden: int, gate: str) -> None:
    """mLSTM through the same kernel as "gla" (one decay per head; the normaliser as value column
    DV + 1, so hidden 80 has three 16-wide value tiles with a partial last one); all three states;
    both forget gates (the exp gate's log f may be positive: a growth the stabiliser absorbs)."""
    module = _mlstm(hidden, forget_gate=gate)
    cell, weights = module.rnnc_layer()
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(steps, 3, IN, generator=gen)
    s0 = [torch.randn(3, *s.shape, generator=gen) * 0.5 for s in cell.states]
    lk = layer_kernel(cell, chunk=chunk, tile=16)
    assert lk.is_chunk and lk.plan.dv == hidden // 2 + 1
    y, s = run_layer(lk, x, dict(weights), s0, None, reverse=False)
    with torch.no_grad():
        want_y, want_s = module(x.transpose(0, 1), tuple(s0))
    assert_close(y.transpose(0, 1), want_y, "float32", "triton", "mlstm y")
    for got, want, what in zip(s, want_s, "Cnm", strict=True):
        assert_close(got, want, "float32", "triton", f"mlstm {what}")


def test_mlstm_scan_fallback_matches_the_module() -> None:
    """The chunked scan a chunk-form cell falls back to (``chunkwise=False``) on the same cell."""
    module = _mlstm()
    cell, weights = module.rnnc_layer()
    x = torch.randn(37, 2, IN, generator=torch.Generator().manual_seed(8))
    lk = layer_kernel(cell, chunk=16, tile=64, chunkwise=False)
    assert lk.is_scan
    y, s = run_layer(lk, x, dict(weights), [torch.zeros(2, *st.shape) for st in cell.states], None, reverse=False)
    with torch.no_grad():
        want_y, want_s = module(x.transpose(0, 1))
    assert_close(y.transpose(0, 1), want_y, "float32", "triton", "mlstm scan y")
    for got, want, what in zip(s, want_s, "Cnm", strict=True):
        assert_close(got, want, "float32", "triton", f"mlstm scan {what}")


def test_wide_mlstm_heads_fall_back_to_the_chunked_scan() -> None:
    """The chunkwise kernel holds a head's whole key width in registers: 4 heads of 64 fit it on an
    H100; one head of 512 does not, and the backend takes the chunked scan (which the solver
    models for mLSTM as its second family) instead of declining the layer."""
    from rnnc.backends.triton import schedule_for
    from rnnc.targets import get

    narrow = CELLS["mlstm"].load_module_class()(8, 256, num_heads=4).rnnc_layer()[0]
    wide = CELLS["mlstm"].load_module_class()(8, 512, num_heads=1).rnnc_layer()[0]
    h100 = get("nvidia/h100-sxm")
    assert schedule_for(narrow, h100).kernel == "chunkwise"
    sched = schedule_for(wide, h100)
    assert sched.kernel == "chunked_scan"
    from rnnc.backends.triton import kernel_at

    assert kernel_at(wide, sched).is_scan and kernel_at(narrow, schedule_for(narrow, h100)).is_chunk


def test_wide_heads_of_other_family_cells_are_declined() -> None:
    """Only mLSTM has a scan model of its matrix state: a one-head GLA of 512 keeps being declined
    with the chunkwise explanation, not handed to a scan the solver would size as a diagonal one."""
    from rnnc.backends import get_backend

    torch.manual_seed(0)
    cell, weights = CELLS["gla"].load_module_class()(8, 512, num_heads=1).rnnc_layer()
    ok, why = get_backend("triton").supports(rnn_program([cell], [[weights]]), "nvidia/h100-sxm")
    assert not ok and "has no chunkwise schedule" in why and "chunked-scan" not in why


def test_compiler_feedback_reaches_the_chunkwise_schedule() -> None:
    """After a spill ``fit_schedule`` asks for twice the warps; the chunkwise model must see it (it
    once ignored ``min_warps`` for linear cells and re-solved the same spilling schedule): past its
    8-warp ceiling there is no schedule, which ends the feedback with the solver's reason."""
    from rnnc.backends.triton import schedule_for
    from rnnc.errors import InfeasibleError
    from rnnc.targets import get

    cell = _module("gla", hidden=64, heads=2).rnnc_layer()[0]
    h100 = get("nvidia/h100-sxm")
    assert int(schedule_for(cell, h100, min_warps=8).param("warps")) == 8
    with pytest.raises(InfeasibleError):
        schedule_for(cell, h100, min_warps=16)
