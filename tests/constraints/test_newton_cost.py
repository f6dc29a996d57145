"""The parallel-in-time cost model (``rnnc.constraints.newton``): its terms behave as the kernels
they cost would (checked against the arithmetic written out here, and against each other), bad
requests are one clear error, and ``explain()`` carries its verdict for the compile target."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import rnnc
from rnnc.constraints import ProblemSpec, solve
from rnnc.constraints.newton import estimate_newton, state_width
from rnnc.errors import UserInputError
from rnnc.targets import get


def _spec(batch: int = 1, hidden: int = 64, steps: int = 4096) -> ProblemSpec:
    return ProblemSpec("lstm", hidden, batch=batch, dtype="fp32", seq_len=steps, input_size=32)


@pytest.mark.parametrize("tag", ["nvidia/h100-sxm", "cpu/x86-avx2", "cpu/arm64-neon"])
def test_terms_scale_as_the_work_does(tag: str) -> None:
    target = get(tag)
    full, diag = (estimate_newton(_spec(), target, 5, m) for m in ("full", "diag"))
    assert full.sequential_s == diag.sequential_s == solve(_spec(), target).estimate.seconds
    assert full.scan_s > diag.scan_s and full.jacobian_s >= diag.jacobian_s  # D³ folds vs D
    twice = estimate_newton(_spec(), target, 10, "full")
    assert twice.newton_s == pytest.approx(2 * full.newton_s)  # iterations multiply, nothing else
    wide = estimate_newton(_spec(batch=64), target, 5, "diag")
    assert wide.speedup < diag.speedup  # a full batch already keeps the sequential kernel busy
    blocks = [estimate_newton(_spec(), target, 5, "block", b).scan_s for b in (1, 4, 16)]
    assert blocks == sorted(blocks) and diag.scan_s <= blocks[0] <= full.scan_s


def test_work_grows_with_the_rows_and_not_the_iterations_per_row() -> None:
    """Twice the batch is twice the rows of Jacobians and scan on a CPU (no fixed sync term);
    the sequential estimate is the solver's, independent of the method and iteration count."""
    target = get("cpu/x86-avx2")
    one, two = (estimate_newton(_spec(batch=b, steps=1000), target, 3, "diag") for b in (4, 8))
    assert two.scan_s == pytest.approx(2 * one.scan_s) and two.jacobian_s == pytest.approx(2 * one.jacobian_s)
    assert state_width(_spec()) == 2 * 64  # LSTM: h and c


def test_more_cores_shorten_newton_not_the_sequential_steps() -> None:
    base = get("cpu/x86-avx2")
    half_cpu = dataclasses.replace(base.cpu, cores=base.cpu.cores // 2)
    half = dataclasses.replace(base, cpu=half_cpu, peak_tflops=tuple((k, v / 2) for k, v in base.peak_tflops))
    full_box, half_box = (estimate_newton(_spec(), t, 8, "diag") for t in (base, half))
    assert half_box.newton_s > full_box.newton_s


def test_bad_requests_are_one_clear_error() -> None:
    target = get("nvidia/h100-sxm")
    with pytest.raises(UserInputError, match="unknown Newton method"):
        estimate_newton(_spec(), target, 5, "chord")
    with pytest.raises(UserInputError, match="iterations"):
        estimate_newton(_spec(), target, 0)
    with pytest.raises(UserInputError, match="parallel scan already"):
        estimate_newton(ProblemSpec("mingru", 64, dtype="fp32"), target, 5)
    with pytest.raises(UserInputError, match="does not divide"):
        estimate_newton(_spec(), target, 5, "block", 7)


def test_explain_gives_the_target_s_verdict() -> None:
    torch.manual_seed(0)
    ref = torch.nn.GRU(4, 16, batch_first=True)
    x = torch.randn(1, 64, 4)
    compiled = rnnc.compile(ref, (x,), target="nvidia/h100-sxm", time_parallel="newton-full")
    compiled(x)
    text = compiled.explain()
    assert "on nvidia/h100-sxm:" in text and "(estimate: sequential" in text and "Newton full x" in text
