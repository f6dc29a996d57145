"""Lowering recurrent layers to loop nests shared by the C-style backends (C and CUDA).

``lower_layer(cell, target, schedule)`` returns a :class:`Kernel`: the fused gate path for
gate-structured cells, the generic per-sample path for every other cell.
"""

from rnnc.lower.knobs import Knobs, knobs_for
from rnnc.lower.layer import lower_layer
from rnnc.lower.loopnest import Kernel

__all__ = ["Kernel", "Knobs", "knobs_for", "lower_layer"]
