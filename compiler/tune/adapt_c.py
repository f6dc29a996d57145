"""Tuning adapter of the C backend: candidates are built with gcc and timed on this CPU.

A CPU ``Schedule`` reaches the C lowering through ``rnnc.lower.knobs.from_schedule`` (``threads``
-> workers, ``mr`` x vector lanes -> hidden tile, ``nr`` -> batch block, ``k_block``; the
``l2_resident`` decision is not rendered), and ``threads`` is also the OpenMP worker count the
runtime is given.  Kernels are built with
``-march=native``, so only targets describing this CPU can be measured here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.tune.protocol import MEASURE, Built

HOST_TAG = "cpu/host"


class CTunable:
    name = "c"
    tolerance = "c"

    def mode(self, target: Any) -> str:
        from rnnc.targets.host import base_tag

        if target.kind != "cpu":
            raise UnsupportedError(f"the C backend runs on CPUs; {target.tag} is a GPU (tune it with --backend cuda)")
        if target.tag not in (HOST_TAG, base_tag()):
            raise UnsupportedError(f"C kernels are built with -march=native for this CPU ({base_tag()}); "
                                   f"tune for {target.tag} on such a machine, or use --target {HOST_TAG}")
        return MEASURE

    def problem(self, spec: Any) -> Any:
        return spec

    def rendered(self, layer: Any, schedule: Any) -> Any:
        from rnnc.lower.knobs import from_schedule

        knobs = dict(from_schedule(schedule, layer.cell.hidden_size))
        return tuple(sorted({**knobs, "threads": int(schedule.param("threads", 0) or 0)}.items()))

    def build(self, layer: Any, schedule: Any, target: Any) -> Built:
        from rnnc.backends.cstyle import compile_program

        threads = int(schedule.param("threads", 0) or 0)
        program = compile_program(layer.program(), target, schedule, threads=threads)
        knobs = [b.kernel.meta.get("knobs", {}) for b in program.builds.values()]
        code = "\n".join(program.sources.values())
        identity = hashlib.sha256(f"{code}\0threads={threads}".encode()).hexdigest()[:16]
        return Built(program, identity, {"threads": threads, "knobs": knobs[0] if knobs else {}})


ADAPTER = CTunable()
