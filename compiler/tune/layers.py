"""What the tuner tunes: one recurrent layer (a Cell, its weights, the shapes it runs at).

Records are keyed per layer, not per model, so two models sharing an LSTM(40, 256) share its
record and a model's record survives edits to its other layers.  A :class:`Layer` carries its
own single-layer ``Program`` (the reference the candidates are checked against, via the IR
interpreter) and is picklable, so Ray workers can receive it as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rnnc.autotune_db import RecordKey
from rnnc.errors import UserInputError
from rnnc.ir import Cell, Program, cell_hash, rnn_program
from rnnc.ir.rnn import direction_params, rnn_layout


@dataclass(frozen=True)
class Layer:
    """One cell at one (batch, seq_len): the unit of tuning and of the record key."""

    cell: Cell
    weights: dict[str, Any] = field(compare=False, repr=False, hash=False)
    batch: int = 1
    seq_len: int = 64
    #: storage dtype of a model cast to fp16/bf16 (its step graph stays fp32); "" = the step's
    storage: str = ""

    @property
    def dtype(self) -> str:
        """What the record key names: a bf16 model must not be served an fp32 layer's record."""
        return self.storage or self.cell.step.inputs[0][1].dtype

    @property
    def label(self) -> str:
        return (f"{self.cell.kind} I={self.cell.input_size} H={self.cell.hidden_size} "
                f"B={self.batch} T={self.seq_len}")

    def shapes(self) -> tuple[tuple[str, int], ...]:
        c = self.cell
        return (("batch", self.batch), ("seq_len", self.seq_len), ("input_size", c.input_size),
                ("hidden_size", c.hidden_size), ("output_size", c.output_size))

    def key(self, target: str, backend: str) -> RecordKey:
        return RecordKey(cell_hash(self.cell), self.shapes(), self.dtype, target, backend)

    def problem(self) -> Any:
        """The solver's ``ProblemSpec`` of this layer: the layer plan's (``rnnc.passes``), for the
        cells the solver's table knows (its ranked tilings are the tuner's candidates)."""
        from rnnc.constraints import CELLS
        from rnnc.passes import plan_layer

        if self.cell.kind not in CELLS:
            raise UserInputError(f"the solver has no tiling model for cell {self.cell.kind!r}; tuning needs "
                                 f"one of {', '.join(CELLS)}")
        return plan_layer(self.cell).problem(self.batch, self.dtype, self.seq_len)

    def program(self) -> Program:
        """A Program with just this layer (the reference the candidates must match)."""
        return rnn_program([self.cell], [[self.weights]], batch_first=True)

    def inputs(self, seed: int = 0) -> tuple[Any, ...]:
        import torch

        g = torch.Generator().manual_seed(seed)
        return (torch.randn((self.batch, self.seq_len, self.cell.input_size), generator=g),)


def layers_of(program: Program, batch: int = 1, seq_len: int = 64) -> list[Layer]:
    """The distinct recurrent layers of ``program`` (by structural hash), in graph order."""
    from rnnc.ir.printer import layer_key, layer_storage

    out: dict[str, Layer] = {}
    values = dict(program.weights)
    storage = layer_storage(program)
    for node in program.rnn_nodes():
        cells, dirs, _ = rnn_layout(node.attr_dict)
        per_direction = direction_params(node.attr_dict, node.inputs[2 + len(cells[0].states):])
        for k, cell in enumerate(cells):
            wnames = per_direction[k * dirs]  # the forward direction's weights stand for the layer
            h = cell_hash(cell)
            if h in out:
                continue
            try:
                weights = {p: values[n] for p, n in wnames.items()}
            except KeyError as exc:
                raise UserInputError(f"rnn weight {exc} is computed inside the graph; tuning needs weights stored "
                                     "in the Program") from None
            out[h] = Layer(cell, weights, batch, seq_len, storage[layer_key(cell)])
    if not out:
        raise UserInputError("the model has no recurrent layer (rnn node) to tune")
    return list(out.values())


def cell_layers(cell: str, input_size: int, hidden: int, batch: int = 1, seq_len: int = 64, seed: int = 0,
                **hparams: Any) -> list[Layer]:
    """The layer of a built-in cell (``rnnc tune --cell``), with its module's initial weights."""
    import torch

    from rnnc.frontend import trace
    from rnnc.kernels import get_cell_info

    info = get_cell_info(cell)
    torch.manual_seed(seed)
    module = info.load_module_class()(input_size, hidden, **hparams)
    program = trace(module.eval(), torch.randn(batch, max(2, min(seq_len, 8)), input_size))
    return layers_of(program, batch, seq_len)
