"""Tiling problems, one per (kernel family, device kind).

``build(spec, target)`` picks the problem class; adding a kernel family means adding a module
here and one line to ``PROBLEMS``, nothing else.
"""

from __future__ import annotations

from rnnc.targets import HardwareSpec

from ..spec import ProblemSpec
from .base import SCALE, TilingProblem
from .chunk import ChunkCpu, ChunkGpu
from .cpu import CpuFused, CpuScan
from .fused_gpu import FusedGpu
from .scan_gpu import ScanGpu

PROBLEMS: dict[tuple[str, str], type[TilingProblem]] = {
    ("fused", "gpu"): FusedGpu,
    ("scan", "gpu"): ScanGpu,
    ("fused", "cpu"): CpuFused,
    ("scan", "cpu"): CpuScan,
    ("chunk", "gpu"): ChunkGpu,
    ("chunk", "cpu"): ChunkCpu,
}

__all__ = ["PROBLEMS", "SCALE", "ChunkCpu", "ChunkGpu", "CpuFused", "CpuScan", "FusedGpu", "ScanGpu", "TilingProblem",
           "build"]


def build(spec: ProblemSpec, target: HardwareSpec) -> TilingProblem:
    """The tiling problem of ``spec`` on ``target`` (model built, not solved)."""
    return PROBLEMS[(spec.info.family, target.kind)](spec, target)
