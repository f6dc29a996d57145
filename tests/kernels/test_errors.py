"""Bad hyperparameters are the user's error and say so in one sentence naming the value."""

from __future__ import annotations

import pytest
import torch

from rnnc.errors import RnncError, UnsupportedError, UserInputError
from rnnc.kernels import CELLS, get_cell_info
from rnnc.kernels.elman.module import ElmanLayer
from rnnc.kernels.elman.reference import reference as elman_ref
from rnnc.kernels.lru.module import LRULayer
from rnnc.kernels.lstm.module import LSTMLayer
from rnnc.kernels.mamba.cell import build_cell as mamba_cell
from rnnc.kernels.mamba.module import MambaS6Layer
from rnnc.kernels.mlstm.cell import build_cell as mlstm_cell
from rnnc.kernels.mlstm.module import MLSTMLayer
from rnnc.kernels.slstm.cell import build_cell as slstm_cell
from rnnc.kernels.slstm.module import SLSTMLayer


@pytest.mark.parametrize(("make", "error", "words"), [
    (lambda: slstm_cell(4, 10, num_heads=3), UserInputError,
     "hidden_size 10 must be a positive multiple of num_heads 3"),
    (lambda: SLSTMLayer(4, 10, num_heads=4), UserInputError, "num_heads 4"),
    (lambda: slstm_cell(4, 8, num_heads=0), UserInputError, "num_heads 0"),
    (lambda: slstm_cell(4, 8, forget_gate="tanh"), UnsupportedError, "forget_gate 'tanh'"),
    (lambda: SLSTMLayer(4, 8, forget_gate="relu"), UnsupportedError, "forget_gate 'relu'"),
    (lambda: mlstm_cell(4, 33, num_heads=2), UserInputError, "mLSTM hidden_size 33"),
    (lambda: MLSTMLayer(4, 33, num_heads=4), UserInputError, "mLSTM hidden_size 33"),
    (lambda: MLSTMLayer(4, 8, forget_gate="linear"), UnsupportedError, "forget_gate 'linear'"),
    (lambda: ElmanLayer(4, 8, nonlinearity="gelu"), UnsupportedError, "nonlinearity 'gelu'"),
    (lambda: elman_ref(torch.zeros(1, 1, 4), {}, nonlinearity="gelu"), UnsupportedError, "nonlinearity 'gelu'"),
    (lambda: LSTMLayer(4, 8, proj_size=8), UserInputError, "proj_size"),
    (lambda: LSTMLayer(4, 8, proj_size=-1), UserInputError, "proj_size"),
    (lambda: LRULayer(4, 8, r_min=0.9, r_max=0.5), UserInputError, "r_min=0.9"),
    (lambda: MambaS6Layer(4, 8, dt_rank=0), UserInputError, "dt_rank=0"),
    (lambda: MambaS6Layer(4, 8, dt_min=0.1, dt_max=0.01), UserInputError, "dt_min"),
    (lambda: mamba_cell(4, 8, dt_rank=0), UserInputError, "dt_rank=0"),
    (lambda: get_cell_info("transformer"), UserInputError, "unknown cell 'transformer'"),
])
def test_bad_hyperparameters(make, error: type[RnncError], words: str) -> None:
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert words in message
    assert "\n" not in message  # one sentence, not a dump


def test_every_registered_cell_has_reference_module_and_builder() -> None:
    for name, info in CELLS.items():
        assert callable(info.reference()), name
        cls = info.load_module_class()
        assert cls.__name__ == info.module_class
        assert callable(getattr(cls, "rnnc_layer", None)), name
