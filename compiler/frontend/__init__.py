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
    """What converts to rnnc's own IR ops directly: torch.nn layers, function/method names, and
    the core-ATen operators with a first-class mapping.  Everything else an eager model calls is
    captured through torch.export into the generic ``aten`` op (docs/frontend.md)."""
    from rnnc.frontend import fx_convert
    from rnnc.frontend.handlers import HANDLERS
    from rnnc.frontend.handlers_aten import ATEN

    return {"modules": sorted(t.__name__ for t in fx_convert.MODULES),
            "functions": sorted(HANDLERS), "aten": sorted(ATEN)}
