"""Infeasible tilings are explained in device units, and every suggested change really fits
(while the next smaller change does not)."""

from __future__ import annotations

import json

import pytest

from rnnc.constraints import InfeasibleTiling, ProblemSpec, solve
from rnnc.errors import InfeasibleError

KiB, MiB = 1 << 10, 1 << 20


def _explain(spec: ProblemSpec, tag: str):
    with pytest.raises(InfeasibleTiling) as exc:
        solve(spec, tag)
    return exc.value


def _fits(spec: ProblemSpec, tag: str) -> bool:
    try:
        solve(spec, tag)
        return True
    except InfeasibleTiling:
        return False


def test_lstm_4096_fp32_single_block_on_t4():
    spec = ProblemSpec("lstm", 4096, batch=16, dtype="fp32", grid_sync=False)
    err = _explain(spec, "nvidia/t4")
    assert isinstance(err, InfeasibleError) and err.exit_code == 1
    text = str(err)
    # 4 gates x 4096 x 4096 x 4 B = 256 MiB; T4: 64 KiB shared memory, 65536 x 4 B registers per block
    assert "256 MiB" in text and "64 KiB" in text and "256 KiB" in text and "nvidia/t4" in text
    short = {s.resource: s for s in err.explanation.shortfalls}
    assert short["shared_memory"].available == 64 * KiB
    # even with every register holding weights, 256 MiB - 256 KiB must go to shared memory
    assert short["shared_memory"].needed >= 256 * MiB - 256 * KiB
    kinds = {s.kind: s for s in err.explanation.suggestions}
    assert "grid_sync" not in kinds  # 40 SMs x 320 KiB = 12.5 MiB < 256 MiB: no help
    assert any("grid sync" in f for f in err.explanation.failed)
    heads = kinds["heads"].spec.heads
    assert _fits(kinds["heads"].spec, "nvidia/t4")
    smaller = max(h for h in (1, 2, 4, 8, 16, 32, 64, 128) if h < heads)
    assert not _fits(spec.replace(heads=smaller), "nvidia/t4")
    hidden = kinds["hidden"].spec.hidden
    assert _fits(kinds["hidden"].spec, "nvidia/t4") and not _fits(spec.replace(hidden=hidden + 8), "nvidia/t4")
    json.dumps(err.explanation.to_dict())  # machine-readable as well


def test_bf16_instead_of_fp32_is_suggested_when_it_fits():
    # GRU H=256 single block on H100: 3 x 256 x 256 x 4 B = 768 KiB > 227 KiB smem + 256 KiB regs,
    # while bf16 halves it to 384 KiB
    spec = ProblemSpec("gru", 256, batch=8, dtype="fp32", grid_sync=False)
    err = _explain(spec, "nvidia/h100-sxm")
    kinds = {s.kind: s for s in err.explanation.suggestions}
    assert kinds["dtype"].change == "bf16 instead of fp32"
    assert kinds["grid_sync"].change.startswith("multi-block with grid sync")
    assert _fits(kinds["dtype"].spec, "nvidia/h100-sxm") and _fits(kinds["grid_sync"].spec, "nvidia/h100-sxm")


@pytest.mark.parametrize("hidden, fits", [(64, True), (128, True), (512, False)])
def test_elman_single_block_boundary_on_t4(hidden, fits):
    """Elman fp32, one head, one block: weights are hidden^2 x 4 B against 64 KiB + 256 KiB."""
    spec = ProblemSpec("elman", hidden, batch=1, dtype="fp32", grid_sync=False)
    if fits:
        sched = solve(spec, "nvidia/t4")
        assert sched.resources.blocks == 1 and not sched.resources.grid_sync
    else:
        err = _explain(spec, "nvidia/t4")
        short = {s.resource: s for s in err.explanation.shortfalls}
        assert short["shared_memory"].needed >= 512 * 512 * 4 - 256 * KiB  # 1 MiB minus the registers


def test_chunk_explanation_names_the_sizes():
    """One 4096-wide mLSTM head: its key tile alone outgrows a block (chunk family, DK = the head)."""
    err = _explain(ProblemSpec("mlstm", 4096, heads=1, batch=1, dtype="bf16"), "nvidia/h200")
    assert "DK=4096" in str(err) and "registers per block" in str(err)
    assert any(s.kind == "heads" for s in err.explanation.suggestions)
    assert not any(s.kind == "state_size" for s in err.explanation.suggestions)
