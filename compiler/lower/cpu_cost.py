"""A CPU cost model of one recurrent step, from rates measured on this host or a target's data.

Why a model with measured rates: the choices the untuned C kernel makes between streaming fewer
bytes and doing less arithmetic (int8 codes widened per use or once at packing,
``Knobs.widen_codes``) turn on where the weights live between steps (L2, L3 or DRAM) and how
fast this core reads from there versus how fast it multiplies.  Datasheets give the cache sizes
but rarely the per-core bandwidth of each level, and the cost of widening int8 is a property of
the micro-architecture, so for ``cpu/host`` the rates come from a short probe of this machine's
own kernels (``rnnc.backends.cstyle.probe``, cached per host); for another target they are
derived from its YAML data (peak FLOP/s, L2 bytes per cycle, memory bandwidth) and marked as
estimates.

The model: a one-row step on ``cores`` cores gives each core ``1/cores`` of the recurrent weights
and multiply-adds; its time is the core's multiply-adds times the seconds per multiply-add of
the micro-kernel with that weight type when its weights live in the level a core's share fits
(L1, L2, the shared L3, DRAM).  The probe measures exactly that table with the kernels
themselves; a target's YAML gives it as a roofline (the slower of reading the bytes and doing the
multiply-adds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: memory levels, nearest first
LEVELS = ("l1", "l2", "l3", "dram")
#: bytes per weight of each weight type the kernels stream
WEIGHT_BYTES = {"float": 4, "int8": 1}


@dataclass(frozen=True)
class CpuRates:
    """Per-core seconds per multiply-add of the one-row micro-kernel, by weight type and level.

    ``mac_seconds``: ``((wtype, level), seconds), ...``; ``cache_bytes``: the capacity of
    ``l1``/``l2`` (per core) and ``l3`` (shared); ``source``: where the numbers come from (a probe
    of this host, or a target's YAML with the formula)."""

    mac_seconds: tuple[tuple[tuple[str, str], float], ...]
    cache_bytes: tuple[tuple[str, int], ...]
    cores: int = 1
    source: str = ""

    def level(self, core_bytes: float, total_bytes: float) -> str:
        """Where a core's share of weights stays between steps."""
        caps = dict(self.cache_bytes)
        if core_bytes <= caps["l1"]:
            return "l1"
        if core_bytes <= caps["l2"]:
            return "l2"
        return "l3" if total_bytes <= caps["l3"] else "dram"

    def step_seconds(self, macs: float, wtype: str = "float") -> float:
        """Predicted time of a one-row step of ``macs`` multiply-adds with ``wtype`` weights."""
        core_macs = macs / self.cores
        level = self.level(core_macs * WEIGHT_BYTES[wtype], macs * WEIGHT_BYTES[wtype])
        return core_macs * dict(self.mac_seconds)[(wtype, level)]


#: a kernel variant is predicted faster only by more than this fraction: the probe's own
#: run-to-run spread on a shared 2-core VM is a few percent, and a near tie is not worth the
#: less common path
MARGIN = 0.1


def stream_int8_codes(hidden: int, gates: int, rates: CpuRates) -> bool:
    """Whether a one-row step is predicted faster streaming int8 recurrent weights (a quarter of
    the bytes, widened per use) than with the codes widened to floats once at packing.  Batched
    steps are compute-bound and favour widening; the batch is not known when the untuned kernel
    is built, so that choice is left to the tuner (``rnnc.tune.adapt_c``)."""
    macs = gates * hidden * hidden
    return rates.step_seconds(macs, "int8") < (1 - MARGIN) * rates.step_seconds(macs, "float")


#: int8 micro-kernel / float micro-kernel compute time assumed for a target that is not this
#: host: two extra instructions (sign-extend, convert) per weight vector beside one FMA
ESTIMATED_WIDEN_RATIO = 2.0


def yaml_rates(target: Any) -> CpuRates:
    """A roofline from a CPU target's data: the FMA peak per core, L1 at two vector loads per
    cycle, L2 at its bytes per cycle, L3 at half that (no YAML field), DRAM bandwidth shared by
    all cores; every figure at the base clock.

    The cores that share a step: a kernel for a target this machine can execute is run here
    (``rnnc.compile``, the tuner) on this machine's cores, at most the target's; one for another
    ISA runs on the target's own cores."""
    from rnnc.targets import get
    from rnnc.targets.host import can_run

    cpu = target.cpu
    cores = min(cpu.cores, get("cpu/host").cpu.cores) if can_run(cpu)[0] else cpu.cores
    clock = float(target.clock_mhz) * 1e6
    lanes = cpu.vector_width_bits // 32
    mac_s = 1.0 / (cpu.fma_units_per_core * lanes * clock)
    l2 = cpu.l2_bytes_per_cycle * clock
    read = {"l1": 2 * cpu.vector_width_bits // 8 * clock, "l2": l2, "l3": l2 / 2,
            "dram": float(target.memory_bandwidth_gbs) * 1e9 / max(cpu.cores, 1)}
    table = tuple(((w, lv), max(b / read[lv], mac_s * (ESTIMATED_WIDEN_RATIO if w == "int8" else 1.0)))
                  for w, b in WEIGHT_BYTES.items() for lv in LEVELS)
    caches = (("l1", cpu.l1d_bytes), ("l2", cpu.l2_bytes), ("l3", cpu.l3_bytes))
    return CpuRates(table, caches, cores,
                    f"a roofline from {target.tag}'s data (FMA peak, cache bytes/cycle, memory bandwidth / cores)")


def rates_for(target: Any) -> CpuRates:
    """This host's probed rates for ``cpu/host`` (measured once per machine, then cached), a
    target's YAML roofline otherwise; the probe falls back to the roofline, saying why, when it
    cannot run (no compiler)."""
    if getattr(target, "tag", "") == "cpu/host":
        from rnnc.backends.cstyle.probe import host_rates  # the probe builds the C backend's kernels

        return host_rates(target)
    return yaml_rates(target)
