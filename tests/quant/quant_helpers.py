"""Shared fixtures of the quantization tests: a small GRU model with an injected outlier channel."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import rnnc


class GruNet(torch.nn.Module):
    """in_proj -> GRU -> head; ``outlier`` scales in_proj's channel 3 and divides the GRU's
    input column 3 by the same factor, so the float function is unchanged."""

    def __init__(self, outlier: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.in_proj = torch.nn.Linear(8, 32)
        self.gru = torch.nn.GRU(32, 32, batch_first=True)
        self.head = torch.nn.Linear(32, 4)
        with torch.no_grad():
            self.in_proj.weight[3] *= outlier
            self.in_proj.bias[3] *= outlier
            self.gru.weight_ih_l0[:, 3] /= outlier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.in_proj(x))[0])


def host_int8_bits() -> int:
    """Bits of an int8 weight that meets integer activations, quantized for ``cpu/host``: 7 where
    this CPU's u8 x s8 dot product saturates pair sums (x86 without VNNI), else 8.  The one
    expectation of these tests that depends on the CPU, on purpose (``targets/int8dot.py``)."""
    from rnnc.targets import get

    return 7 if get("cpu/host").cpu.int8_dot.format == "s7" else 8


def inputs(batch: int = 6, steps: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, steps, 8, generator=torch.Generator().manual_seed(seed))


def ort_run(model_proto, *xs: torch.Tensor) -> list[np.ndarray]:
    """Run an exported model; exposed initial states (inputs after the given ones) are zeros."""
    sess = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for i, meta in enumerate(sess.get_inputs()):
        feeds[meta.name] = xs[i].numpy() if i < len(xs) else np.zeros(
            [d if isinstance(d, int) else xs[0].shape[0] for d in meta.shape], np.float32)
    return sess.run(None, feeds)


def op_types(graph, found: set[str] | None = None) -> set[str]:
    """Op types of a graph and all its bodies (Scan)."""
    found = set() if found is None else found
    for n in graph.node:
        found.add(n.op_type)
        for a in n.attribute:
            if a.type == a.GRAPH:
                op_types(a.g, found)
    return found


def traced(outlier: float = 1.0) -> tuple[GruNet, rnnc.Program]:
    model = GruNet(outlier).eval()
    return model, rnnc.trace(model, (inputs(),))
