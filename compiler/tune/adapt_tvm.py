"""Tuning adapter of the TVM backend: the solver's CPU tilings built by TVM (llvm) and timed here.

Why TVM is tuned too: on some shapes its kernels beat the C backend's (batch 16 on a 2-core
AVX-512 host, ``docs/benchmarks/tvm_cpu.md``), so the backend is part of the search:
``rnnc tune --backend all`` tunes every tunable backend able to run on the target and
``rnnc.compile(backend=None)`` takes the one whose records are fastest (``rnnc.api``).
TVM builds for this machine's LLVM CPU (``-mcpu`` of the host), so only ``cpu/host`` and the
generic target this machine matches are measured; its untuned default is the solver's first
tiling, which is the first ranked candidate anyway.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.tune.protocol import MEASURE, Built


class TvmTunable:
    name = "tvm"
    tolerance = "tvm"

    def mode(self, target: Any) -> str:
        from rnnc.targets.host import base_tag

        if target.kind != "cpu":
            raise UnsupportedError(f"TVM kernels are tuned on CPUs here; {target.tag} is a GPU "
                                   f"(tune it with --backend cuda)")
        if target.tag not in ("cpu/host", base_tag()):
            raise UnsupportedError(f"TVM builds for this machine's CPU ({base_tag()}); tune for {target.tag} "
                                   f"on such a machine, or use --target cpu/host")
        return MEASURE

    def problem(self, spec: Any) -> Any:
        return spec

    def rendered(self, layer: Any, schedule: Any) -> Any:
        from rnnc.backends.tvm.knobs import knobs_for
        from rnnc.targets import get

        knobs = knobs_for(schedule, get(schedule.target), layer.batch).__dict__
        return tuple(sorted((k, v) for k, v in knobs.items() if k not in ("source", "unused")))

    def build(self, layer: Any, schedule: Any, target: Any) -> Built:
        from rnnc.backends.tvm import compile_program

        program = compile_program(layer.program(), target, schedule, batch=layer.batch)
        identity = hashlib.sha256(repr(self.rendered(layer, schedule)).encode()).hexdigest()[:16]
        return Built(program, identity, {"knobs": dict(self.rendered(layer, schedule))})


ADAPTER = TvmTunable()
