"""Parallel (associative) scan of the first-order linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

The linear cells (minGRU, minLSTM, LRU, Mamba S6) all reduce to this recurrence, which is why
backends may run them as a parallel scan.  This module is the *independent* formulation the
tests hold the plain time loops of ``reference.py`` against: a Hillis-Steele scan over the
associative operator ``(a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2)`` that touches the sequence in
``ceil(log2 T)`` doubling sweeps instead of T sequential steps.  It works for real and complex
tensors alike (LRU scans in complex arithmetic).
"""

from __future__ import annotations

import torch


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states ``h_1..h_T`` of ``h_t = a_t ⊙ h_{t-1} + b_t``; time is dim 1 (``[B, T, ...]``).

    ``a`` broadcasts against ``b``; ``h0`` (``[B, ...]``, zeros when ``None``) is folded into
    the first step as ``b_1 + a_1 h0`` so the scan itself starts from zero.
    """
    a, b = torch.broadcast_tensors(a, b)
    if b.shape[1] == 0:
        return b.clone()
    if h0 is not None:
        b = torch.cat([b[:, :1] + a[:, :1] * h0.unsqueeze(1), b[:, 1:]], dim=1)
    steps = b.shape[1]
    shift = 1
    while shift < steps:
        # element t combines with element t - shift (earlier prefix on the left)
        a_prev, b_prev = a[:, :-shift], b[:, :-shift]
        a_cur, b_cur = a[:, shift:], b[:, shift:]
        b = torch.cat([b[:, :shift], a_cur * b_prev + b_cur], dim=1)
        a = torch.cat([a[:, :shift], a_cur * a_prev], dim=1)
        shift *= 2
    return b
