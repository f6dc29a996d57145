"""Tuning adapter of the C backend: candidates are built with gcc and timed on this CPU.

A CPU ``Schedule`` reaches the C lowering through ``rnnc.lower.knobs.from_schedule`` (``threads``
-> workers, ``mr`` x vector lanes -> hidden tile, ``nr`` -> batch block, ``k_block``; the
``l2_resident`` decision is not rendered), and ``threads`` is also the OpenMP worker count the
runtime is given.  Kernels are built with the target's ``-march`` (``build.c_flags``), so any
CPU target whose ISA this machine can execute is measured here as that CPU would run its code
(``cpu/x86-avx2`` on an AVX-512 host); other ISAs are tuned on such a machine.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.lower.knobs import schedule_threads
from rnnc.passes import plan_layer
from rnnc.tune.protocol import MEASURE, Built

HOST_TAG = "cpu/host"


class CTunable:
    name = "c"
    tolerance = "c"

    def mode(self, target: Any) -> str:
        from rnnc.targets.host import can_run

        if target.kind != "cpu":
            raise UnsupportedError(f"the C backend runs on CPUs; {target.tag} is a GPU (tune it with --backend cuda)")
        ok, why = can_run(target.cpu)
        if not ok:
            raise UnsupportedError(f"C kernels for {target.tag} cannot be measured on this machine ({why}); "
                                   f"tune for {target.tag} on such a CPU, or use --target {HOST_TAG}")
        return MEASURE

    def problem(self, spec: Any) -> Any:
        return spec

    def untuned_default(self, layer: Any, target: Any) -> Any:
        """What ``rnnc.compile`` builds without a record (``cpu_knobs``), as a Schedule with no
        params: always the tuner's first candidate, so tuning can only replace it with a
        candidate measured faster (``rnnc.tune.resolve``)."""
        from rnnc.constraints import Schedule

        return Schedule(kernel="untuned_default", cell=layer.cell.kind, target=target.tag,
                        problem=tuple(layer.shapes()), params=())

    def knob_variants(self, layer: Any, target: Any) -> list[Any]:
        """The C kernel's own knobs around the untuned default, searched beside the solver's
        tilings (which do not cover them): the time chunk (how many steps' input projection run
        as one GEMM), the register tile's batch rows and hidden units.  One knob at a time
        first, so a small ``max_candidates`` still tries each direction.  Measured, never assumed:
        the default's guesses differ by host (AVX2's 16 registers vs AVX-512's 32)."""
        from rnnc.constraints import Schedule
        from rnnc.lower.knobs import CPU_KNOBS_KERNEL, batch_rows, cpu_knobs

        cell, h = layer.cell, layer.cell.hidden_size
        if plan_layer(cell).chunk is not None:  # the chunkwise kernel's one knob; 0 = step by step
            return [Schedule(kernel=CPU_KNOBS_KERNEL, cell=cell.kind, target=target.tag,
                             problem=tuple(layer.shapes()), params=(("chunk", c),))
                    for c in (0, 16, 32, 128) if c <= max(layer.seq_len, 1)]
        plan = plan_layer(cell).gate_plan
        int8 = plan is not None and any(lin.scale for lin in plan.linears)
        base = cpu_knobs(h, plan.gates if plan is not None else 1, target, "float32", int8)
        options = {
            "time_chunk": [c for c in (64, 128, 16, 32) if c <= max(layer.seq_len, 1)],
            "batch_block": [b for b in (1, 2, 3, 4, 6, 8) if b <= max(layer.batch, 1)],
            "tile_hidden": [t for t in (base.tile_hidden * 2, base.tile_hidden // 2) if t >= 1 and h % t == 0],
            # the input projection by the host's BLAS (torch) for all steps at once, and the loop
            # form of the GEMM tiles instead of the micro-kernel: measured, never assumed
            "host_gemm": [1] if layer.seq_len * layer.batch > 1 else [],
            "ukernel": [0] if layer.batch > 1 or layer.seq_len > 1 else [],
        }
        if int8:  # int8 codes streamed and widened per use, or widened once at packing
            options["widen_codes"] = [1 - base.widen_codes]
        default = {k: getattr(base, k) for k in options}
        seen, out = {tuple(default.items())}, []

        def add(params: dict[str, int]) -> None:
            key = tuple(params.items())
            if key not in seen:
                seen.add(key)
                out.append(Schedule(kernel=CPU_KNOBS_KERNEL, cell=cell.kind, target=target.tag,
                                    problem=tuple(layer.shapes()), params=key))

        for name, values in options.items():  # one knob at a time
            for v in values:
                add({**default, name: v})
        if int8:  # the other way of feeding codes, with the batch rows its tile takes
            add({**default, "widen_codes": 1 - base.widen_codes,
                 "batch_block": batch_rows(target.cpu, plan.gates, base.tile_hidden, streamed=bool(base.widen_codes))})
        for chunk in options["time_chunk"]:  # then pairs of chunk and batch rows
            for block in options["batch_block"]:
                add({**default, "time_chunk": chunk, "batch_block": block})
        return out


    def rendered(self, layer: Any, schedule: Any) -> Any:
        from rnnc.lower.knobs import from_schedule

        knobs = dict(from_schedule(schedule, layer.cell.hidden_size))
        return tuple(sorted({**knobs, "threads": schedule_threads(schedule)}.items()))

    def build(self, layer: Any, schedule: Any, target: Any) -> Built:
        from rnnc.backends.cstyle import compile_program

        threads = schedule_threads(schedule)
        program = compile_program(layer.program(), target, schedule, threads=threads)
        knobs = [b.kernel.meta.get("knobs", {}) for b in program.builds.values()]
        identity = source_identity("\n".join(program.sources.values()), threads)
        return Built(program, identity, {"threads": threads, "knobs": knobs[0] if knobs else {}})

    def built_identity(self, runner: Any, key: str, schedule: Any) -> str | None:
        """The identity of layer ``key`` as ``runner`` (a compiled program) built it, comparable
        with a record's ``source_sha``; None when the runner is not this backend's."""
        builds = getattr(runner, "builds", None)
        if not builds or key not in builds:
            return None
        return source_identity(builds[key].source, schedule_threads(schedule))



def source_identity(code: str, threads: int) -> str:
    """Hash of a kernel's C source and its worker count: equal means the same kernel runs."""
    return hashlib.sha256(f"{code}\0threads={threads}".encode()).hexdigest()[:16]


ADAPTER = CTunable()
