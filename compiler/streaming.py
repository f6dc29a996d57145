"""Streaming a whole model chunk by chunk with its recurrent state kept inside.

Why: a streaming model such as Silero VAD is written as ``prob, state = model(chunk, state)``;
its users call it every 32 ms and carry the state themselves.  A compiled model with that shape
-- its trailing inputs are its next trailing outputs, type for type -- gets a stepper that holds
the state: ``s = compiled.stream(batch); prob = s.step(chunk)``, whatever engine runs the model
(native program, onnxruntime, kernels + interpreter).  A program that is exactly one ``rnn``
node keeps the C backend's own per-step stepper (``cstyle.runtime.Stream``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rnnc.errors import UnsupportedError, UserInputError

#: the symbol of the batch dim in traced programs (``rnnc.frontend.dims``)
BATCH = "B"


def _state_shape(a: Any, b: Any) -> tuple[Any, ...] | None:
    """The shape an input ``a`` and an output ``b`` share if they can be one state (same dtype and
    rank; each dim equal, or a size the trace left symbolic on one side and fixed on the other --
    the batch symbol must match itself), else None."""
    if a.dtype != b.dtype or a.rank != b.rank:
        return None
    shape = []
    for x, y in zip(a.shape, b.shape, strict=True):
        if x == y:
            shape.append(x)
        elif BATCH in (x, y) or (isinstance(x, int) and isinstance(y, int)):
            return None
        else:
            shape.append(x if isinstance(x, int) else y)
    return tuple(shape)


def state_count(program: Any) -> int:
    """How many trailing inputs come back as the trailing outputs (0: none), always leaving at
    least one input that is not state."""
    g = program.graph
    ins = [t for _, t in g.inputs]
    outs = [g.value_types()[v] for _, v in g.outputs]
    k = 0
    while k < min(len(ins) - 1, len(outs)) and _state_shape(ins[-1 - k], outs[-1 - k]) is not None:
        k += 1
    return k


class WholeStream:
    """``step(*inputs) -> outputs``: the model with its trailing state inputs fed from the last
    step's trailing outputs (zeros at the start; ``reset()`` zeroes them again)."""

    def __init__(self, run: Callable[..., Any], program: Any, batch: int, states: int | None = None) -> None:
        """``states``: how many trailing inputs are state (default: :func:`state_count`'s guess,
        by type -- name it when a model's last non-state input has its state's type)."""
        import torch

        self.run, self.batch = run, batch
        self.count = state_count(program) if states is None else states
        if states is not None and not 0 < states <= state_count(program):
            raise UserInputError(f"states={states}: the model's last {states} inputs do not come back as its last "
                                 f"outputs (at most {state_count(program)} do)")
        self.free = len(program.graph.inputs) - self.count  # inputs the caller passes each step
        if self.count == 0:
            raise UnsupportedError("streaming a whole model needs state inputs that come back as its last "
                                   "outputs (e.g. prob, state = model(chunk, state)); this model has none")
        g = program.graph
        types = g.value_types()
        self._zeros = []
        for (name, t), (_, v) in zip(g.inputs[-self.count:], g.outputs[-self.count:], strict=True):
            shared = _state_shape(t, types[v]) or ()
            other = [d for d in shared if isinstance(d, str) and d != BATCH]
            if other:
                raise UnsupportedError(f"state input %{name} has the symbolic size {other[0]}: the stream "
                                       f"cannot allocate it")
            shape = tuple(batch if d == BATCH else d for d in shared)
            self._zeros.append(torch.zeros(shape, dtype=getattr(torch, t.dtype)))
        self.states: list[Any] = [z.clone() for z in self._zeros]

    def reset(self) -> None:
        self.states = [z.clone() for z in self._zeros]

    def step(self, *inputs: Any) -> Any:
        if len(inputs) != self.free:
            raise UserInputError(f"step takes the model's {self.free} non-state input(s), got {len(inputs)}")
        outs = self.run(*inputs, *self.states)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        self.states = list(outs[len(outs) - self.count:])
        kept: Sequence[Any] = outs[:len(outs) - self.count]
        return kept[0] if len(kept) == 1 else tuple(kept)
