"""What every tiling problem shares: helpers, cost scaling and the ``TilingProblem`` interface.

A tiling problem turns (``ProblemSpec``, ``HardwareSpec``) into a :class:`Model` whose
objective is an integer cost (cycles times ``SCALE``), and turns a solution back into a
:class:`Schedule`.  Costs are first-order models -- good enough to rank tilings and to refuse
impossible ones; the tuner measures the survivors.  Kernel-model constants (not hardware
numbers, which live in the YAML files) are named and documented in each problem module.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable

from rnnc.targets import HardwareSpec

from ..model import Model, Solution
from ..schedule import Estimate, Resources, Schedule
from ..spec import ProblemSpec

#: Objective units per cycle: costs are rounded to 1/SCALE of a cycle so both solvers see
#: exactly the same integer objective.
SCALE = 64


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def pow2_between(lo: int, hi: int) -> list[int]:
    out, v = [], 1
    while v <= hi:
        if v >= lo:
            out.append(v)
        v *= 2
    return out


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def cost(x: float) -> int:
    """A per-unit cost in objective units (never 0 for a positive cost, so it still counts)."""
    return max(1, round(x * SCALE)) if x > 0 else 0


class TilingProblem(ABC):
    """One kernel family's integer model on one target."""

    kernel: str = ""

    def __init__(self, spec: ProblemSpec, target: HardwareSpec) -> None:
        self.spec, self.target = spec, target
        self.model = self.build()

    @abstractmethod
    def build(self) -> Model:
        """The integer model (variables, constraints, resources, objective)."""

    @abstractmethod
    def schedule(self, solution: Solution, source: str) -> Schedule:
        """Decode a solution into the Schedule (params, predicted resources, estimate)."""

    @abstractmethod
    def demand(self) -> list[str]:
        """Hand-computed sentences about what the layer needs vs what the device offers."""

    def relaxations(self) -> Iterable[tuple[str, ProblemSpec]]:
        """Changed specs to try when nothing fits, smallest change first (see explain)."""
        return ()

    # ----------------------------------------------------------------- helpers
    def _make(self, params: dict[str, int | str], resources, estimate: Estimate | None, source: str) -> Schedule:
        return Schedule(
            kernel=self.kernel,
            cell=self.spec.cell,
            target=self.target.tag,
            problem=self.spec.key(),
            params=tuple(params.items()),
            resources=resources,
            estimate=estimate,
            source=source,
        )

    def _estimate(self, compute_s: float, memory_s: float, latency_s: float, flops: float, nbytes: float) -> Estimate:
        parts = {"compute": compute_s, "memory": memory_s, "latency": latency_s}
        bound = max(parts, key=parts.__getitem__)
        return Estimate(seconds=parts[bound], bound=bound, flops=float(flops), bytes=float(nbytes))

    def block_resources(self, values: dict[str, int]) -> Resources:
        """A GPU block's predicted resources from a solution of a model that defines ``warps``,
        ``reg_bytes`` (the block's register bytes), ``smem_bytes``, ``blocks`` and
        ``blocks_per_sm``: registers per thread as the hardware allocates them."""
        g = self.target.gpu
        threads = values["warps"] * g.warp_size
        unit = g.register_allocation_unit // g.warp_size
        return Resources(
            registers_per_thread=min(round_up(-(-values["reg_bytes"] // (4 * threads)), unit), g.registers_per_thread),
            shared_memory_per_block=values["smem_bytes"], threads_per_block=threads, blocks=values["blocks"],
            blocks_per_sm=values["blocks_per_sm"],
            occupancy=round(min(1.0, values["blocks_per_sm"] * threads / g.max_threads_per_sm), 4))

    def peak_flops(self, dtype: str) -> float:
        """FLOP/s for ``dtype`` (fp32 rate when the target lists no rate for it)."""
        value = self.target.peak(dtype) or self.target.peak("fp32") or 1.0
        return value * 1e12
