"""Running a Program whose rnn layers are TVM functions: the callable ``rnnc.load`` returns.

The non-recurrent nodes of the graph run through the IR's own torch semantics (``OPS``); each
``rnn`` node runs its layers' compiled functions through the TVM runtime, passing torch tensors
by DLPack (no copies), in the layout ``layer.py`` documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rnnc.backends.tvm.build import LayerFn
from rnnc.backends.tvm.layer import pack_weight, packed_tiles
from rnnc.ir.graph import Node, Program
from rnnc.ir.interp import run_with_kernels
from rnnc.ir.rnn import direction_params, rnn_layout, run_stack


class TvmProgram:
    """A Program whose recurrent layers run as compiled TVM functions on this CPU."""

    def __init__(self, program: Program, executable: Any, layers: Sequence[LayerFn]) -> None:
        self.program = program
        self.executable = executable
        self.layers = {(f.node, f.layer, f.direction): f for f in layers}
        self._packed: dict[tuple[int, int, int], Any] = {}

    def _fn(self, name: str) -> Any:
        return self.executable[name]

    def __call__(self, *inputs: Any) -> Any:
        return run_with_kernels(self.program, inputs, self.run_rnn)

    def run_rnn(self, node: Node, args: list[Any]) -> tuple[Any, ...]:
        """One ``rnn`` node of the program on its TVM functions (the interpreter's ``rnn`` hook; also
        what a per-node mix of backends calls, ``rnnc.backends.mixed``)."""
        index = next(i for i, n in enumerate(self.program.rnn_nodes()) if n.outputs[0] == node.outputs[0])
        return self._run_rnn(index, node, args)

    def _weight(self, tensor: Any, jt: int | None) -> Any:
        """The argument for one weight: as is, or packed in tiles of ``jt`` (cached per tensor)."""
        if jt is None:
            return tensor.contiguous()
        key = (tensor.data_ptr(), id(tensor), jt)
        if key not in self._packed:
            self._packed[key] = (tensor, pack_weight(tensor, jt))
        return self._packed[key][1]

    def _run_rnn(self, index: int, node: Node, args: list[Any]) -> tuple[Any, ...]:
        import torch

        attrs = node.attr_dict
        cells, dirs, _ = rnn_layout(attrs)
        x, lengths = args[0], args[1]
        n_states = len(cells[0].states)
        inits, per_direction = args[2:2 + n_states], direction_params(attrs, args[2 + n_states:])
        x_tm = (x.transpose(0, 1) if attrs["batch_first"] else x).float().contiguous()
        steps, batch = x_tm.shape[0], x_tm.shape[1]
        lens = (lengths.to(torch.int64).contiguous() if lengths is not None
                else torch.full((batch,), steps, dtype=torch.int64))

        def direction(k: int, d: int, cell: Any, layer_in: Any, out: Any, off: int, states: list[Any]) -> None:
            # the TVM function writes its own columns of the whole [T, B, D*F] output (its direction is
            # compiled in) and double-buffers each state: [0] holds the initial, [T % 2] the final
            f = self.layers[(index, k, d)]
            params = per_direction[k * dirs + d]
            bufs = []
            for view, s in zip(states, cell.states, strict=True):
                buf = torch.zeros((2, batch, *s.shape), dtype=torch.float32)
                buf[0] = view
                bufs.append(buf)
            tiles = packed_tiles(f.plan, f.knobs)
            packed = [self._weight(params[p], tiles.get(p)) for p in cell.param_names]
            if steps:
                self._fn(f.name)(layer_in.contiguous(), out, lens, *bufs, *packed)
            for view, buf in zip(states, bufs, strict=True):
                view.copy_(buf[steps % 2])

        y, finals = run_stack(cells, dirs, x_tm, inits, direction, out_dtype=x_tm.dtype, state_dtype=torch.float32,
                              zeroed=True)
        out = y.transpose(0, 1) if attrs["batch_first"] else y
        return (out.contiguous(), *finals)
