"""PyTorch -> rnnc IR.

``trace(model, example_inputs, *, dynamic=None)`` converts eager models (torch.fx with concrete
example values; recurrent layers and cells become ``rnn`` nodes, Python loops over cells are
merged into one node over a symbolic T) and TorchScript modules (a converter over the inlined
aten graph, used for Silero VAD).  ``Recurrent`` runs a user-written cell over time.
"""

from rnnc.frontend.api import trace
from rnnc.frontend.usercell import Recurrent

__all__ = ["Recurrent", "supported_ops", "trace"]


def supported_ops() -> dict[str, list[str]]:
    """What the converters handle: torch.nn layers and function/method/aten names."""
    from rnnc.frontend import fx_convert
    from rnnc.frontend.handlers import HANDLERS

    return {"modules": sorted(t.__name__ for t in fx_convert.MODULES),
            "functions": sorted(HANDLERS)}
