"""Predicted per-call latency of a quantization plan on a CPU target, from the target's data.

Why: ``scheme="auto"`` times its candidates in onnxruntime when the target is this machine; for
any other target (a phone's CPU, an AVX2 server) it cannot, so it ranks them by this model.  The
model is a roofline of the parts a plan changes, on one core (batch-1 inference, as the timed
search runs it):

* every weight site's multiply-adds per call (the rows it saw per calibration sample times its
  weight's size) at the core's rate for that level: float, fp16, weight-only int8 and int4 run at
  the float32 FMA rate, ``fma_units x fp32 lanes x clock`` (onnxruntime widens int8 and fp16
  weights when the model loads; int4 ``MatMulNBits`` dequantizes blocks as it goes, counted as
  float work); integer activations run the target's integer dot product (its YAML
  ``int8_dot``): four byte products per 32-bit lane where it adds exactly into int32 (VNNI
  ``vpdpbusd``, Arm ``sdot``/``udot``), two where it adds saturating pairs (``vpmaddubsw``), one
  where the target names none;
* what integer activations cost besides: quantizing the site's input (two vector passes for a
  per-call dynamic scale -- range, then codes -- one for a calibrated static scale) and
  rescaling its output, one fp32 vector op per lane per cycle.

What it leaves out, on purpose: operations every plan shares (gates, norms, convolutions without
quantized weights), and per-node dispatch.  The one case where dispatch decides -- integer
recurrent layers that onnxruntime cannot fuse and the export runs as a per-step ``Scan`` -- is
ranked after every plan that avoids it by the caller (``quant/auto.py``), from the export itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rnnc.targets import HardwareSpec

#: integer products per fp32 FMA lane, by the target's int8 dot-product semantics
_INT8_PER_LANE = {"exact": 4, "saturating_pairs": 2}


@dataclass(frozen=True)
class Rates:
    """Per-core rates of ``spec`` (per second): float32 multiply-adds, int8 multiply-adds, and
    fp32 elementwise vector lanes."""

    float_macs: float
    int8_macs: float
    elementwise: float
    source: str

    @classmethod
    def of(cls, spec: HardwareSpec) -> Rates:
        cpu = spec.cpu
        if cpu is None:
            raise ValueError(f"{spec.tag} is not a CPU target: no CPU latency model")
        clock = spec.clock_mhz * 1e6
        lanes = cpu.lanes("fp32")
        dot = cpu.int8_dot
        per_lane = 1 if dot.instruction == "generic" else _INT8_PER_LANE.get(dot.semantics, 1)
        return cls(cpu.fma_units_per_core * lanes * clock, cpu.fma_units_per_core * lanes * per_lane * clock,
                   lanes * clock, f"{spec.tag}: {cpu.fma_units_per_core} FMA units x {lanes} fp32 lanes x "
                   f"{spec.clock_mhz} MHz, int8 x{per_lane} per lane ({dot.instruction}, {dot.semantics})")


@dataclass(frozen=True)
class SiteLoad:
    """One weight site's work per call: ``rows`` input rows of ``inputs`` features into
    ``outputs`` features (``macs`` multiply-adds)."""

    rows: float
    inputs: int
    outputs: int

    @property
    def macs(self) -> float:
        return self.rows * self.inputs * self.outputs


def site_load(shape: Sequence[int], rows: float) -> SiteLoad:
    """A linear ``[out, in]`` or conv ``[O, C, K...]`` weight seeing ``rows`` rows (positions) a call."""
    return SiteLoad(rows, math.prod(shape[1:]), shape[0])


def predict_seconds(loads: Mapping[str, SiteLoad], plan: Mapping[str, str], rates: Rates) -> float:
    """Predicted seconds a call spends in the plan's weight sites (levels as ``quant/auto.py``)."""
    total = 0.0
    for site, load in loads.items():
        level = plan.get(site, "float")
        if level in ("int8", "int8-static"):
            passes = 2 if level == "int8" else 1  # dynamic: the range, then the codes
            total += load.macs / rates.int8_macs
            total += (passes * load.rows * load.inputs + load.rows * load.outputs) / rates.elementwise
        else:
            total += load.macs / rates.float_macs
    return total
