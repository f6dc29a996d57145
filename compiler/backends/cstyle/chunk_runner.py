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
        self.shape = (kernel.meta["heads"], kernel.meta["dk"], kernel.meta["dv"])

    #: a streaming step always goes through :meth:`run` (no pointer-swap fast path)
    owner = property(lambda self: None, lambda self, value: None)

    def run(self, x: Any, y: Any, y_off: int, states: Sequence[Any], lengths: Any = None,
            reverse: bool = False) -> None:
        """``x [T, B, I]`` view; writes ``y[..., y_off:y_off + F]``; the state ``[B, NH, DK, DV]``
        (contiguous fp32) is updated in place."""
        import torch

        from rnnc.lower.chunkwise import finish, prepare

        steps, batch = int(x.shape[0]), int(x.shape[1])
        if steps == 0 or batch == 0:  # nothing to run; the states stay as they are
            return
        values, ops = prepare(self.cell, self.form, self.params, x, self.shape, lengths, reverse)
        dummy = torch.zeros(1)
        state = states[0]
        o = torch.empty((steps, batch, self.shape[0], self.shape[2]), dtype=torch.float32)
        bufs = [ops["q"], ops["k"], ops["v"], dummy if ops["g"] is None else ops["g"],
                dummy if ops["beta"] is None else ops["beta"], state, o]
        units = batch * self.shape[0]
        sc = (ctypes.c_long * 3)(batch, steps, max(1, min(self.workers, units)))
        ptrs = (ctypes.c_void_p * len(bufs))(*[b.data_ptr() for b in bufs])
        self.fn(sc, ptrs)
        out = finish(self.cell, self.form, values, o, lengths, reverse)
        y[:, :, y_off:y_off + out.shape[-1]] = out
