"""Linear cells: the plain time loop (reference.py) == a parallel formulation of the same recurrence.

minGRU, minLSTM, LRU and Mamba S6 go through the Hillis-Steele scan of ``rnnc.kernels.scan``;
mLSTM through its quadratic attention-like form (``kernels/mlstm/scan.py``).  What this checks
is the *order of evaluation* (sequential loop vs parallel scan / causal matrix): the parallel
forms reuse each reference's per-step gate math (``coefficients``, ``project``) on purpose, so
it is not an outside check of that math -- ``test_paper_oracles.py`` is, written from the papers'
equations with none of the references' helpers.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
from kernel_cases import INPUT_SIZE, LINEAR_CELLS, make_module, random_states

from rnnc.kernels import CELLS
from rnnc.kernels.deltanet.chunk import chunked as deltanet_chunked
from rnnc.kernels.gla.chunk import chunked as gla_chunked
from rnnc.kernels.hgrn2.chunk import chunked as hgrn2_chunked
from rnnc.kernels.lru.scan import parallel as lru_parallel
from rnnc.kernels.mamba.scan import parallel as mamba_parallel
from rnnc.kernels.mamba2.chunk import chunked as mamba2_chunked
from rnnc.kernels.mingru.scan import parallel as mingru_parallel
from rnnc.kernels.minlstm.scan import parallel as minlstm_parallel
from rnnc.kernels.mlstm.chunk import chunked as mlstm_chunked
from rnnc.kernels.mlstm.scan import parallel as mlstm_parallel
from rnnc.kernels.retnet.chunk import chunked as retnet_chunked
from rnnc.kernels.scan import linear_scan
from rnnc.tolerances import assert_close

PARALLEL = {"mingru": mingru_parallel, "minlstm": minlstm_parallel, "lru": lru_parallel,
            "mamba": mamba_parallel, "mlstm": mlstm_parallel,
            # the matrix-state family: chunkwise form at a chunk that splits every tested length unevenly
            **{name: functools.partial(fn, chunk_size=5) for name, fn in (
                ("gla", gla_chunked), ("retnet", retnet_chunked), ("hgrn2", hgrn2_chunked),
                ("deltanet", deltanet_chunked), ("mamba2", mamba2_chunked))}}

FAMILY = ("gla", "retnet", "hgrn2", "deltanet", "mamba2")


def test_every_linear_cell_has_a_parallel_form() -> None:
    assert set(PARALLEL) == set(LINEAR_CELLS)


@pytest.mark.parametrize(("name", "batch", "steps", "hidden", "given"), list(itertools.product(
    sorted(PARALLEL), (1, 3), (1, 7, 64, 200), (8, 33, 128), (False, True))))
def test_loop_matches_parallel_scan(name: str, batch: int, steps: int, hidden: int, given: bool) -> None:
    module = make_module(name, hidden)
    x = torch.randn(batch, steps, INPUT_SIZE, generator=torch.Generator().manual_seed(7))
    state = random_states(module, batch) if given else None
    params = dict(module.named_parameters())
    with torch.no_grad():
        want_y, want_states = CELLS[name].reference()(x, params, state, **module.hparams())
        kwargs = module.hparams() if name in FAMILY else {
            k: v for k, v in module.hparams().items() if k in ("num_heads", "forget_gate")}
        got_y, got_states = PARALLEL[name](x, params, state, **kwargs)
    assert_close(got_y, want_y, "float32", "scan", f"{name} y")
    for i, (g, w) in enumerate(zip(got_states, want_states, strict=True)):
        assert_close(g, w, "float32", "scan", f"{name} state {i}")


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_mlstm_parallel_with_exp_forget_gate(forget_gate: str) -> None:
    """The exp forget gate lets log f be positive: the stabiliser must still match."""
    module = make_module("mlstm", 16, forget_gate=forget_gate)
    with torch.no_grad():
        module.bias_f.fill_(0.3)  # positive log f under the exp gate
    x = torch.randn(2, 40, INPUT_SIZE, generator=torch.Generator().manual_seed(8))
    state = random_states(module, 2)
    params = dict(module.named_parameters())
    with torch.no_grad():
        want_y, want_states = CELLS["mlstm"].reference()(x, params, state, **module.hparams())
        got_y, got_states = mlstm_parallel(x, params, state, num_heads=module.num_heads, forget_gate=forget_gate)
    assert_close(got_y, want_y, "float32", "scan", "mlstm y")
    for g, w in zip(got_states, want_states, strict=True):
        assert_close(g, w, "float32", "scan", "mlstm state")


@pytest.mark.parametrize(("steps", "given", "chunk"), list(itertools.product((1, 7, 64, 200), (False, True), (5, 64))))
def test_mlstm_chunkwise_matches_the_loop(steps: int, given: bool, chunk: int) -> None:
    """mLSTM's chunk form (prefix-max stabilisers + the "gla" chunk form with the normaliser as a
    value column) against the reference loop, at lengths that split unevenly into chunks."""
    module = make_module("mlstm", 33)
    x = torch.randn(3, steps, INPUT_SIZE, generator=torch.Generator().manual_seed(steps))
    state = random_states(module, 3) if given else None
    params = dict(module.named_parameters())
    with torch.no_grad():
        want_y, want_states = CELLS["mlstm"].reference()(x, params, state, **module.hparams())
        got_y, got_states = mlstm_chunked(x, params, state, **module.hparams(), chunk_size=chunk)
    assert_close(got_y, want_y, "float32", "scan", "mlstm y")
    for g, w, what in zip(got_states, want_states, "Cnm", strict=True):
        assert_close(g, w, "float32", "scan", f"mlstm {what}")


def test_mlstm_chunkwise_stabiliser_under_growth() -> None:
    """Input-gate pre-activations near 60 and a forget gate that grows (exp gate, log f = +1): the
    unstabilised sums would overflow fp32 (e^60 e^T) within a few steps; the chunk form stays
    finite, its stabiliser m equals the loop's, and its states agree."""
    module = make_module("mlstm", 16, forget_gate="exp")
    with torch.no_grad():
        module.bias_i.fill_(60.0)
        module.bias_f.fill_(1.0)
    x = torch.randn(2, 150, INPUT_SIZE, generator=torch.Generator().manual_seed(3))
    params = dict(module.named_parameters())
    with torch.no_grad():
        want_y, want_states = CELLS["mlstm"].reference()(x, params, None, **module.hparams())
        got_y, got_states = mlstm_chunked(x, params, None, **module.hparams(), chunk_size=32)
    assert torch.isfinite(got_y).all() and want_states[2].min() > 100  # m grew past e^100's reach
    for g, w, what in zip(got_states, want_states, "Cnm", strict=True):
        assert_close(g, w, "float32", "scan", f"mlstm {what}")


@pytest.mark.parametrize("steps", [1, 2, 5, 16, 33])
@pytest.mark.parametrize("complex_", [False, True])
def test_linear_scan_matches_sequential_recurrence(steps: int, complex_: bool) -> None:
    """The scan primitive on its own, at lengths around powers of two, real and complex."""
    g = torch.Generator().manual_seed(steps)
    dtype = torch.complex128 if complex_ else torch.float64
    a = torch.rand(2, steps, 4, generator=g, dtype=torch.float64).to(dtype) * 0.9
    b = torch.randn(2, steps, 4, generator=g, dtype=torch.float64).to(dtype)
    h0 = torch.randn(2, 4, generator=g, dtype=torch.float64).to(dtype)
    h, want = h0, []
    for t in range(steps):
        h = a[:, t] * h + b[:, t]
        want.append(h)
    assert_close(linear_scan(a, b, h0), torch.stack(want, dim=1), "float64", "scan")
