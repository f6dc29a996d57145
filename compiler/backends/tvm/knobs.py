"""The TVM emitters' reading of a Schedule (``rnnc.constraints.Schedule``, the one type).

``Knobs`` is the emitters' input signature, not a second Schedule: :func:`knobs_for` picks the
parameters of the Schedule's kernel family that the TIR loops use, and documents which ones
this backend does not honour (so the manifest can say so instead of pretending).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: below this many multiply-adds (or elements) a nest runs on one thread.  Inside the serial
#: time loop every parallel region is a thread-pool wake-up per step (microseconds, and idle
#: workers spin), so a step nest must be much bigger than a nest that runs once per call.
PARALLEL_MIN_WORK = 1 << 16
PARALLEL_MIN_WORK_PER_STEP = 1 << 19

#: Schedule parameters the emitters use, per kernel family; everything else is reported unused.
USED = {
    "cpu_fused_recurrence": ("threads", "mr", "nr", "k_block", "vector_lanes"),
    "cpu_chunked_scan": ("threads", "vector_lanes"),
    "fused_recurrence": ("warps",),
    "chunked_scan": ("warps",),
}


@dataclass(frozen=True)
class Knobs:
    """Loop decisions for one layer.

    CPU: ``threads`` (parallel outer loops), ``vector_lanes`` (innermost vector tiles), ``mr``
    (vectors of output features per accumulator block), ``nr`` (rows per block) and ``k_block``
    (reduction panel kept in L1) of the ``linear`` micro-kernel, ``batch`` (the batch the
    Schedule was solved for: it sizes the parallel-or-not decision, the kernels take any
    batch), ``l2_bytes`` (sizes the time chunks of the input projection, ``layer.time_chunk``).
    CUDA: ``threads_per_block``.
    """

    threads: int = 1
    vector_lanes: int = 8
    mr: int = 2
    nr: int = 2
    k_block: int = 64
    l2_bytes: int = 1 << 20
    batch: int = 1
    threads_per_block: int = 256
    parallel_min_work: int = PARALLEL_MIN_WORK
    parallel_min_work_per_step: int = PARALLEL_MIN_WORK_PER_STEP
    source: str = "heuristic"
    unused: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knobs_for(schedule: Any = None, target: Any = None, batch: int = 1) -> Knobs:
    """Knobs from ``schedule`` (a ``Schedule``) or, without one, from the target's data."""
    cpu = getattr(target, "cpu", None)
    base = Knobs(threads=getattr(cpu, "cores", 1) or 1, l2_bytes=getattr(cpu, "l2_bytes", 1 << 20),
                 vector_lanes=max(1, getattr(cpu, "vector_width_bits", 256) // 32), batch=batch)
    if schedule is None:
        return base
    p = schedule.params_dict
    used = USED.get(schedule.kernel, ())
    unused = tuple(sorted(k for k in p if k not in used))
    warps = p.get("warps")
    return Knobs(threads=int(p.get("threads", base.threads)),
                 vector_lanes=int(p.get("vector_lanes", base.vector_lanes)),
                 mr=int(p.get("mr", base.mr)), nr=int(p.get("nr", base.nr)),
                 k_block=int(p.get("k_block", base.k_block)), l2_bytes=base.l2_bytes,
                 batch=int(dict(schedule.problem).get("batch", batch)),
                 threads_per_block=32 * int(warps) if warps else base.threads_per_block,
                 source=schedule.source, unused=unused)


def tile(n: int, want: int, lanes: int) -> int:
    """The largest tile <= ``want`` dividing ``n``, preferring multiples of the vector lanes."""
    for t in range(min(want, n), 0, -1):
        if n % t == 0 and (t % lanes == 0 or n % lanes):
            return t
    return 1


def linear_tile(out_features: int, knobs: Knobs) -> int:
    """Output features per ``linear`` micro-tile (``mr`` vectors of ``vector_lanes``); packed
    weights are laid out in tiles of this width, so the emitter and the packer share it."""
    return tile(out_features, knobs.mr * knobs.vector_lanes, knobs.vector_lanes)
