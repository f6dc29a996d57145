"""The tiling problems of every kernel family: both solvers return the brute-force optimum, and
the decoded Schedules respect the device limits by hand-written arithmetic."""

from __future__ import annotations

import random

import pytest

import rnnc.targets as targets
from rnnc.constraints import CELLS, ProblemSpec, brute, build, solve, solve_model
from rnnc.constraints.brute import combinations
from rnnc.errors import UserInputError

GPUS = [t for t in targets.list_tags() if t.startswith("nvidia/")]
CPUS = ["cpu/x86-avx2", "cpu/x86-avx512", "cpu/arm64-neon", "cpu/host"]
HIDDEN = [32, 64, 96, 128, 192, 256, 384, 768, 1024, 2048, 4096]


def _generated(n: int, seed: int, brute_limit: int | None, at_least: int = 0) -> list[tuple[ProblemSpec, str]]:
    """A reproducible sample of (problem, target) over cells x sizes x dtypes x all targets,
    keeping only models with at_least..brute_limit decision combinations when a limit is given."""
    r = random.Random(seed)
    out: list[tuple[ProblemSpec, str]] = []
    while len(out) < n:
        tag = r.choice(GPUS + CPUS)
        target = targets.get(tag)
        cell = r.choice(list(CELLS))
        hidden = r.choice(HIDDEN)
        heads = r.choice([h for h in (1, 2, 4, 8) if hidden % h == 0])
        dtype = r.choice([d for d in ("fp32", "bf16", "fp16") if target.supports(d)])
        spec = ProblemSpec(cell, hidden, heads=heads, batch=r.choice([1, 3, 8, 16, 64]), dtype=dtype,
                           seq_len=r.choice([100, 1024]), grid_sync=r.random() < 0.8)
        if brute_limit is not None and not at_least <= combinations(build(spec, target).model) <= brute_limit:
            continue
        out.append((spec, tag))
    return out


def _key(sol, model):
    return None if sol is None else (sol.objective, sol.decisions(model))


@pytest.mark.parametrize("spec, tag", _generated(60, seed=1, brute_limit=30000),
                         ids=lambda x: x if isinstance(x, str) else x.describe())
def test_both_solvers_match_brute_force(spec, tag):
    model = build(spec, targets.get(tag)).model
    expect = _key(brute.solve(model, limit=30000), model)
    assert _key(solve_model(model, "rnnc"), model) == expect
    assert _key(solve_model(model, "cpsat"), model) == expect


@pytest.mark.parametrize("spec, tag", _generated(5, seed=3, brute_limit=150000, at_least=30001),
                         ids=lambda x: x if isinstance(x, str) else x.describe())
def test_both_solvers_match_brute_force_on_bigger_domains(spec, tag):
    model = build(spec, targets.get(tag)).model
    expect = _key(brute.solve(model, limit=150000), model)
    assert _key(solve_model(model, "rnnc"), model) == expect
    assert _key(solve_model(model, "cpsat"), model) == expect


@pytest.mark.parametrize("spec, tag", _generated(60, seed=2, brute_limit=None),
                         ids=lambda x: x if isinstance(x, str) else x.describe())
def test_rnnc_and_cpsat_agree_on_larger_problems(spec, tag):
    model = build(spec, targets.get(tag)).model
    assert _key(solve_model(model, "rnnc"), model) == _key(solve_model(model, "cpsat"), model)


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman", "slstm"])
@pytest.mark.parametrize("tag", ["nvidia/t4", "nvidia/h100-sxm", "nvidia/jetson-orin-nano", "nvidia/rtx-4090"])
def test_fused_schedule_respects_limits_by_hand(cell, tag):
    gates = {"lstm": 4, "gru": 3, "elman": 1, "slstm": 4}[cell]
    spec = ProblemSpec(cell, 512, heads=2, batch=12, dtype="fp16")
    sched = solve(spec, tag)
    g = targets.get(tag).gpu
    p = sched.params_dict
    n = g.mma("fp16")[0].n
    assert p["hidden_tile"] * p["blocks_per_head"] == 256
    assert p["heads_per_block"] * p["head_groups"] == 2
    assert p["padded_batch"] == 16 and p["padded_batch"] % n == 0  # 12 rounded up to the mma n
    assert p["batch_tile"] % n == 0 and p["batch_tile"] * p["batch_blocks"] == 16
    assert p["register_k"] + p["shared_k"] == p["padded_k"] == 256
    r = sched.resources
    assert r.blocks == p["head_groups"] * p["blocks_per_head"] * p["batch_blocks"] <= g.sm_count
    assert r.grid_sync == (p["blocks_per_head"] > 1)
    rows = gates * p["heads_per_block"] * p["hidden_tile"]
    smem = 2 * rows * p["shared_k"] + 2 * 256 * p["batch_tile"] * p["heads_per_block"] + 4 * rows * p["batch_tile"]
    assert r.shared_memory_per_block == smem <= g.shared_memory_per_block_optin_bytes
    assert r.threads_per_block == 32 * p["warps"] <= 1024
    assert rows % (16 * p["warps"]) == 0  # each warp owns whole m16 tiles
    assert r.registers_per_thread <= 255 and r.registers_per_thread % 8 == 0
    # registers hold rows x register_k fp16 weights plus the fp32 accumulators
    assert r.registers_per_thread * r.threads_per_block * 4 >= 2 * rows * p["register_k"] + 4 * rows * p["batch_tile"]
    assert sched.estimate.seconds > 0 and "not measured" in sched.estimate.note


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "lru", "mamba", "mlstm"])
def test_scan_schedule_respects_limits(cell):
    """mLSTM's scan is its second family (``ALTERNATES``): the GPU fallback for wide heads."""
    tag = "nvidia/l4"
    g = targets.get(tag).gpu
    family = "scan" if cell == "mlstm" else None
    sched = solve(ProblemSpec(cell, 1024, heads=4, batch=8, dtype="bf16", seq_len=1000, family=family), tag)
    assert sched.kernel == "chunked_scan"
    p, r = sched.params_dict, sched.resources
    assert p["padded_seq_len"] % p["chunk"] == 0 and p["padded_seq_len"] >= 1000
    assert p["chunks"] * p["chunk"] == p["padded_seq_len"]
    assert r.shared_memory_per_block <= g.shared_memory_per_block_optin_bytes
    assert r.blocks_per_sm * (r.shared_memory_per_block + 1024) <= g.shared_memory_per_sm_bytes
    assert r.blocks_per_sm * r.threads_per_block <= g.max_threads_per_sm
    assert r.blocks <= g.sm_count * r.blocks_per_sm * p["waves"]
    assert r.registers_per_thread <= 255


@pytest.mark.parametrize("cell", ["lstm", "mamba"])
@pytest.mark.parametrize("tag", CPUS)
def test_cpu_schedules_fit_the_caches(cell, tag):
    c = targets.get(tag).cpu
    sched = solve(ProblemSpec(cell, 768, batch=4, dtype="fp32"), tag)
    foot = dict(sched.resources.cache_footprint)
    assert foot["l1d"] <= c.l1d_bytes
    assert foot.get("l2", 0) <= c.l2_bytes
    assert 1 <= sched.resources.threads <= c.cores
    if cell == "lstm":
        p = sched.params_dict
        assert p["mr"] * p["nr"] + p["mr"] + 1 <= c.vector_registers
        assert p["rows_per_thread"] % (p["mr"] * p["vector_lanes"]) == 0
        assert p["rows_per_thread"] * p["threads"] == 4 * 768


def test_unsupported_dtype_and_bad_spec_are_user_errors():
    with pytest.raises(UserInputError, match="does not support dtype bf16 \\(try fp16\\)"):
        solve(ProblemSpec("lstm", 256, dtype="bf16"), "nvidia/t4")
    with pytest.raises(UserInputError, match="not divisible by heads"):
        ProblemSpec("lstm", 100, heads=3)
    with pytest.raises(UserInputError, match="unknown cell"):
        ProblemSpec("transformer", 64)
    custom = ProblemSpec("mycell", 256, family="fused", gates=2)
    assert custom.info.gates == 2 and solve(custom, "nvidia/a10").kernel == "fused_recurrence"


def test_shared_memory_only_weights():
    """register_weights=False: every weight column is in shared memory, so the 4.5 MiB of bf16
    LSTM weights (4 x 768 x 768 x 2 B) must be covered by the blocks' shared memory alone."""
    spec = ProblemSpec("lstm", 768, batch=16, dtype="bf16", register_weights=False)
    sched = solve(spec, "nvidia/h100-sxm")
    p = sched.params_dict
    assert p["register_k"] == 0 and p["shared_k"] == 768
    rows = 4 * p["heads_per_block"] * p["hidden_tile"]
    assert sched.resources.shared_memory_per_block >= 2 * rows * 768
    # 4.5 MiB of weights over at most 227 KiB per block needs at least 21 blocks per head
    assert p["blocks_per_head"] * 227 * 1024 >= 4 * 768 * 768 * 2


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_simt_kernels_are_not_modelled_at_the_tensor_core_rate(cell: str) -> None:
    """``tensor_cores=False`` (the CUDA dialect's SIMT warp GEMM): no mma padding, and the same
    tiling can only cost more steps than at the mma rate; the bf16 answer keeps several warps per
    block (at the mma rate the step looked compute-free and one warp per block won)."""
    target = targets.get("nvidia/h100-sxm")
    mma = ProblemSpec(cell, 768, batch=16, dtype="bf16")
    simt = mma.replace(tensor_cores=False)
    assert mma.key() != simt.key()
    s_mma, s_simt = solve(mma, target), solve(simt, target)
    assert s_simt.param("mma") == "simt" and s_simt.param("padded_batch") == 16
    assert s_simt.estimate.seconds >= s_mma.estimate.seconds
    assert s_simt.param("warps") >= 4, s_simt.params


@pytest.mark.parametrize("batch", [1, 5, 16])
def test_serial_batch_tiles_cost_the_whole_batch(batch: int) -> None:
    """``batch_split=False`` (a block runs its batch tiles one after another): the grid is the
    hidden split alone, and a step costs at least what the split model's does."""
    target = targets.get("nvidia/h100-sxm")
    split = ProblemSpec("lstm", 512, batch=batch, dtype="fp32", tensor_cores=False)
    serial = split.replace(batch_split=False)
    s_split, s_serial = solve(split, target), solve(serial, target)
    assert s_serial.resources.blocks == s_serial.param("blocks_per_head") * s_serial.param("head_groups")
    assert s_serial.resources.blocks <= target.gpu.sm_count
    assert s_serial.estimate.seconds >= s_split.estimate.seconds


@pytest.mark.parametrize("cell,hidden", [("elman", 12), ("elman", 4), ("gru", 20)])
@pytest.mark.parametrize("tag", ["cpu/x86-avx512", "cpu/x86-avx2", "cpu/arm64-neon"])
def test_cpu_rows_that_do_not_fill_vectors_are_padded(cell: str, hidden: int, tag: str) -> None:
    """A cell whose gate rows are not whole vectors (Elman H=12 on 16 lanes) gets a tiling of
    padded rows, as the kernels pad them, instead of "no tiling fits"."""
    target = targets.get(tag)
    spec = ProblemSpec(cell, hidden, batch=3, dtype="fp32")
    sched = solve(spec, target)
    lanes = sched.param("vector_lanes")
    rows = CELLS[cell].gates * hidden
    padded = -(-rows // lanes) * lanes
    assert sched.param("gates") == CELLS[cell].gates
    assert sched.param("rows_per_thread") * sched.param("threads") == padded
    assert sched.param("padded_rows", rows) == padded
    assert sched.param("rows_per_thread") % (lanes * sched.param("mr")) == 0


def test_padded_cpu_schedule_runs_right() -> None:
    """The C backend renders the padded schedule of nn.RNN(4, 12) and matches torch."""
    import torch

    import rnnc
    from rnnc.backends.cstyle.program import CompiledProgram
    from rnnc.tolerances import assert_close

    torch.manual_seed(0)
    model = torch.nn.RNN(4, 12, batch_first=True)
    x = torch.randn(3, 9, 4)
    program = rnnc.trace(model, (x,))
    target = targets.get("cpu/host")
    sched = solve(ProblemSpec("elman", 12, batch=3, dtype="fp32"), target)
    got = CompiledProgram(program, target, sched)(x)
    with torch.no_grad():
        want = model(x)
    assert_close(got[0], want[0], "float32", "c", "nn.RNN(4, 12) on the padded solver schedule")
