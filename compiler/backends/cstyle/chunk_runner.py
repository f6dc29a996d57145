"""Running the C chunkwise kernel of a matrix-state layer (``rnnc.lower.chunk``).

Same contract as :class:`rnnc.backends.cstyle.runtime.LayerRunner` (``run(x, y, y_off, states,
lengths, reverse)``), so the layer stack driver and the streaming API treat both alike.  The
cell's state-free pre-nodes and its readout post-nodes run on all ``T*B`` rows at once through
the IR's torch semantics (``rnnc.lower.chunkwise.prepare``/``finish``: one batched evaluation
each, mostly GEMMs in torch's BLAS); the kernel does the sequential part.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from rnnc.backends.cstyle.runtime import default_threads
from rnnc.ir.graph import Cell
from rnnc.lower.loopnest import Kernel


class ChunkLayerRunner:
    """One compiled (layer, direction) of a chunk-form cell."""

    def __init__(self, cell: Cell, kernel: Kernel, fn: Any, params: dict[str, Any], workers: int = 0) -> None:
        from rnnc.passes import plan_layer

        self.cell, self.kernel, self.fn = cell, kernel, fn
        self.form = plan_layer(cell).chunk
        self.params = {k: v.detach().float() for k, v in params.items()}
        self.workers = workers or default_threads()
        self.shape = (kernel.meta["heads"], kernel.meta["dk"], kernel.meta["dv"])  # the kernel's (mLSTM: DV + 1)

    #: a streaming step always goes through :meth:`run` (no pointer-swap fast path)
    owner = property(lambda self: None, lambda self, value: None)

    def run(self, x: Any, y: Any, y_off: int, states: Sequence[Any], lengths: Any = None,
            reverse: bool = False) -> None:
        """``x [T, B, I]`` view; writes ``y[..., y_off:y_off + F]``; the states (the cell's, in
        its order; contiguous fp32) are updated in place."""
        import torch

        from rnnc.lower.chunkwise import finish, prepare

        steps, batch = int(x.shape[0]), int(x.shape[1])
        if steps == 0 or batch == 0:  # nothing to run; the states stay as they are
            return
        prep = prepare(self.cell, self.form, self.params, x, states, lengths, reverse)
        ops = prep.ops
        dummy = torch.zeros(1)
        o = torch.empty((steps, batch, self.shape[0], self.shape[2]), dtype=torch.float32)
        bufs = [ops["q"], ops["k"], ops["v"], dummy if ops["g"] is None else ops["g"],
                dummy if ops["beta"] is None else ops["beta"], prep.s0, o]
        units = batch * self.shape[0]
        sc = (ctypes.c_long * 3)(batch, steps, max(1, min(self.workers, units)))
        ptrs = (ctypes.c_void_p * len(bufs))(*[b.data_ptr() for b in bufs])
        self.fn(sc, ptrs)  # prep.s0 now holds the final state
        out, finals = finish(self.cell, self.form, prep, o, prep.s0, lengths, reverse)
        y[:, :, y_off:y_off + out.shape[-1]] = out
        for state, final in zip(states, finals, strict=True):
            if final is not state:
                state.copy_(final)
