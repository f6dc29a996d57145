"""The cell registry: every recurrent cell rnnc knows, described once.

Each ``kernels/<name>/`` folder holds ``reference.py`` (plain torch loops: the numerical truth),
``module.py`` (an ``nn.Module`` layer users put in their models) and ``cell.py`` (``build_cell``:
the cell's IR step graph, which every backend renders).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CellInfo:
    """Registry entry: name, recurrence class, one-line summary and where the code lives."""

    name: str
    recurrence: str  # "nonlinear" | "linear"
    summary: str
    module_class: str  # class name in kernels/<name>/module.py ("" for torch built-ins only)

    @property
    def package(self) -> str:
        return f"rnnc.kernels.{self.name}"

    def build_cell(self, *args: Any, **kwargs: Any) -> Any:
        """The cell's IR (``kernels/<name>/cell.py:build_cell``)."""
        return importlib.import_module(f"{self.package}.cell").build_cell(*args, **kwargs)

    def load_module_class(self) -> Any:
        return getattr(importlib.import_module(f"{self.package}.module"), self.module_class)

    def reference(self) -> Any:
        return importlib.import_module(f"{self.package}.reference").reference


CELLS: dict[str, CellInfo] = {c.name: c for c in (
    CellInfo("lstm", "nonlinear", "LSTM (torch.nn.LSTM semantics, optional projection)", "LSTMLayer"),
    CellInfo("gru", "nonlinear", "GRU (torch.nn.GRU semantics, reset after the recurrent matmul)", "GRULayer"),
    CellInfo("elman", "nonlinear", "Elman RNN, tanh or relu (torch.nn.RNN semantics)", "ElmanLayer"),
    CellInfo("slstm", "nonlinear", "xLSTM sLSTM: exponential gating with a stabiliser state, heads", "SLSTMLayer"),
    CellInfo("mlstm", "linear", "xLSTM mLSTM: matrix memory C = f C + i v k^T, normaliser, stabiliser",
             "MLSTMLayer"),
    CellInfo("mingru", "linear", "minGRU (Feng et al. 2024): h = (1 - z) h + z h~, gates from x only",
             "MinGRULayer"),
    CellInfo("minlstm", "linear", "minLSTM (Feng et al. 2024): normalised forget/input gates from x only",
             "MinLSTMLayer"),
    CellInfo("lru", "linear", "Linear Recurrent Unit (Orvieto et al. 2023): complex diagonal recurrence",
             "LRULayer"),
    CellInfo("mamba", "linear", "Mamba S6 selective scan: input-dependent delta, B, C; diagonal A",
             "MambaS6Layer"),
    CellInfo("gla", "linear", "GLA (Yang et al. 2024): matrix state, data-dependent gate per key channel",
             "GLALayer"),
    CellInfo("retnet", "linear", "RetNet retention (Sun et al. 2023): matrix state, fixed decay per head",
             "RetNetLayer"),
    CellInfo("hgrn2", "linear", "HGRN2 (Qin et al. 2024): lower-bounded forget gate, outer-product state",
             "HGRN2Layer"),
    CellInfo("deltanet", "linear", "DeltaNet / Gated DeltaNet (Yang et al. 2024, 2025): delta-rule matrix state",
             "DeltaNetLayer"),
    CellInfo("mamba2", "linear", "Mamba-2 SSD (Dao & Gu 2024): scalar decay per head, shared B/C",
             "Mamba2Layer"),
)}


def get_cell_info(name: str) -> CellInfo:
    """Look a cell up by name; unknown names get one sentence listing the known ones."""
    from rnnc.errors import UserInputError

    if name not in CELLS:
        raise UserInputError(f"unknown cell {name!r}; rnnc knows {', '.join(CELLS)}")
    return CELLS[name]
