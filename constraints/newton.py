"""When does parallel-in-time evaluation (Newton / DEER / ParaRNN) beat the sequential kernel?

A cost model, in the same roofline terms as the tiling problems' estimates (datasheet peaks from
the target's YAML, nothing measured), for one nonlinear layer of ``spec`` on ``target``:

* **sequential**: the solver's own estimate for the layer's fused recurrence kernel
  (``solve(spec, target).estimate``) -- T dependent steps;
* **Newton**, per iteration (``rnnc.lower.newton``), costed as kernels that do the work a method
  needs, on all T·B rows at once:

  - the step and its Jacobian: a kernel forms ``A_t`` from the step's own matrices (the recurrent
    weights scaled row by row by the gates' derivatives), about two steps' FLOPs per row for
    ``full`` and one for ``diag``/``block`` (which need only the diagonal or its blocks), plus the
    coefficients it writes.  (The torch reference differentiates the step graph by reverse mode
    instead -- D passes -- which is why it is slower than this model on any machine.)
  - the linear recurrence as the work-efficient chunked scan of ``rnnc.lower.newton_scan``: each
    row folded once into its chunk's transition (``full``: 2D³ FLOPs, ``block``: 2Dk², ``diag``:
    2D) and applied twice; the coefficients cross memory three times (written, folded, rerun).
  - on a GPU, two grid-wide synchronisations (between the fold and the rerun, and after the
    Jacobians), each costed as a DRAM round trip.

  Per iteration, the larger of compute time (FLOPs over the fp32 peak) and memory time (bytes over
  the DRAM bandwidth), plus the synchronisations; total = ``iterations`` x that.

Iterations are the caller's: measured (``NewtonInfo.iterations``) or assumed.  Why a model and
not only measurement: the machine that compiles is often not the one that runs (a GPU estimate
from a CPU-only CI box), and the answer depends on T, B, D and the core count in ways a user can
read off this breakdown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnc.errors import UserInputError
from rnnc.targets import HardwareSpec

from .spec import ProblemSpec

METHODS = ("full", "diag", "block")


@dataclass(frozen=True)
class NewtonEstimate:
    """Estimated seconds per sequence batch, sequential vs Newton -- NOT measurements."""

    method: str
    iterations: int
    sequential_s: float
    newton_s: float
    jacobian_s: float  # per iteration
    scan_s: float  # per iteration
    note: str

    @property
    def speedup(self) -> float:
        """sequential / Newton (> 1: parallel-in-time is predicted to win)."""
        return self.sequential_s / self.newton_s if self.newton_s > 0 else math.inf

    def line(self) -> str:
        verdict = "Newton wins" if self.speedup > 1 else "sequential wins"
        return (f"{verdict}: {self.speedup:.2g}x (estimate: sequential {self.sequential_s * 1e3:.3g} ms, "
                f"Newton {self.method} x{self.iterations} {self.newton_s * 1e3:.3g} ms)")


def state_width(spec: ProblemSpec) -> int:
    """D: the floats of state per batch row (hidden x the cell's state vectors)."""
    return spec.hidden * max(1, spec.info.states)


def estimate_newton(spec: ProblemSpec, target: HardwareSpec, iterations: int, method: str = "full",
                    block: int = 1, dim: int | None = None) -> NewtonEstimate:
    """Sequential vs ``iterations`` Newton iterations of ``method`` (``block``: hidden units per
    block of the ``block`` method) for the layer ``spec`` on ``target``; ``dim``: the state's
    floats per row when the cell table cannot say (a user cell; default :func:`state_width`)."""
    from . import solve

    if method not in METHODS:
        raise UserInputError(f"unknown Newton method {method!r}; use one of {', '.join(METHODS)}")
    if iterations < 1:
        raise UserInputError(f"iterations must be >= 1, got {iterations}")
    info = spec.info
    if info.family != "fused":
        raise UserInputError(f"the Newton cost model is for nonlinear (fused-family) cells; {spec.cell} is "
                             f"{info.family}, which runs as a parallel scan already")
    if block < 1 or spec.hidden % block:
        raise UserInputError(f"block={block} does not divide hidden={spec.hidden}")
    sequential = solve(spec, target).estimate
    rows = spec.seq_len * spec.batch
    dim = dim or state_width(spec)
    k = block * max(1, dim // spec.hidden)
    inputs = spec.input_size or spec.hidden
    step_flops = 2.0 * info.gates * spec.hidden * (spec.hidden + inputs)
    coeffs = {"full": dim * dim, "diag": dim, "block": dim * k}[method]  # floats of A_t per row
    fold = {"full": 2.0 * dim ** 3, "diag": 2.0 * dim, "block": 2.0 * dim * k * k}[method]
    peak = (target.peak("fp32") or 1.0) * 1e12
    bandwidth = target.memory_bandwidth_gbs * 1e9
    jac_flops = rows * (step_flops * (2 if method == "full" else 1) + coeffs)
    jac_bytes = rows * 4 * (inputs + 2 * dim + coeffs)
    jacobian = max(jac_flops / peak, jac_bytes / bandwidth)
    scan_flops = rows * (fold + 2 * 2.0 * coeffs)
    scan_bytes = rows * 4 * (2 * coeffs + 3 * dim)
    scan = max(scan_flops / peak, scan_bytes / bandwidth)
    if target.gpu is not None:
        sync = 2 * target.gpu.dram_latency_cycles / (target.clock_mhz * 1e6)
        where = "chunked scan over the GPU, two grid-wide syncs"
    else:
        sync = 0.0
        where = f"chunked scan over {target.cpu.cores} cores" if target.cpu is not None else "chunked scan"
    scan += sync
    newton = iterations * (jacobian + scan)
    note = (f"roofline estimate on {target.tag} from datasheet peaks, not measured: Jacobians {jacobian * 1e3:.3g} ms "
            f"+ {where} {scan * 1e3:.3g} ms per iteration; sequential: the fused kernel's estimate "
            f"({sequential.bound}-bound)")
    return NewtonEstimate(method, iterations, sequential.seconds, newton, jacobian, scan, note)
