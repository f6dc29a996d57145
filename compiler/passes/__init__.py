"""The analysis pass layer: what every backend needs to know about one recurrent layer.

Why one layer: the C, CUDA, TVM, Triton and ONNX backends and the tuner each used to derive the
same facts from a cell on their own -- which nodes depend on the state (what can be hoisted out
of the time loop), the gate structure, the heads, the solver's tiling problem -- and they
disagreed (Mamba became three different solver problems, heads were dropped by two of them).
Now :func:`plan_layer` runs the ordered :data:`PASSES` over a :class:`~rnnc.ir.Cell` once and
returns one immutable :class:`LayerPlan`; backends make their own *policy* decisions (TVM
hoists only reductions, ONNX only what keeps the batch axis) from its *facts*.
"""

from rnnc.passes.plan import PASSES, LayerPlan, plan_layer

__all__ = ["PASSES", "LayerPlan", "plan_layer"]
