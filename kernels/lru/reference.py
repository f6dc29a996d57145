"""Plain-torch LRU loop in complex arithmetic (Orvieto et al. 2023, "Resurrecting Recurrent
Neural Networks for Long Sequences", §3).

Input ``x [B, T, I]`` (the model width, I = output width), complex diagonal state of N::

    λ = exp(-exp(ν_log) + i·exp(θ_log))          stable: |λ| = exp(-exp(ν_log)) < 1
    γ = exp(γ_log)                               normalisation, √(1 - |λ|²) at init
    h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t)              B = B_re + i B_im  [N, I]
    y_t = Re(C h_t) + D ⊙ x_t                    C = C_re + i C_im  [I, N], D [I]

The IR and the states keep the complex h as two real tensors ``h_re, h_im [B, N]``; this
reference computes in ``torch.complex`` so it checks that real rewrite independently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def coefficients(x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(λ ``[N]``, γ ⊙ B x ``[..., N]``) in complex form: the a and b of ``h_t = a h_{t-1} + b_t``."""
    lam = torch.exp(torch.complex(-torch.exp(params["nu_log"]), torch.exp(params["theta_log"])))
    b_mat = torch.complex(params["B_re"], params["B_im"])
    gamma = torch.exp(params["gamma_log"])
    bx = gamma * (x.to(b_mat.dtype) @ b_mat.T)
    return lam, bx


def readout(h: torch.Tensor, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``y = Re(C h) + D ⊙ x`` for complex ``h [..., N]``."""
    c_mat = torch.complex(params["C_re"], params["C_im"])
    return (h @ c_mat.T).real + params["D"] * x


def to_complex(state: tuple[torch.Tensor, ...] | None, like: torch.Tensor, n: int) -> torch.Tensor:
    """The complex state from its (re, im) pair, zeros when not given."""
    if state is None:
        zeros = like.new_zeros(like.shape[0], n)
        return torch.complex(zeros, zeros)
    return torch.complex(state[0], state[1])


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, **hparams: Any
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, I]``, (h_re ``[B, N]``, h_im ``[B, N]``))."""
    n = params["nu_log"].shape[0]
    lam, bx = coefficients(x, params)
    h = to_complex(state, x, n)
    hs = []
    for t in range(x.shape[1]):
        h = lam * h + bx[:, t]
        hs.append(h)
    y = readout(torch.stack(hs, dim=1), x, params) if hs else x.new_zeros(x.shape)
    return y, (h.real.contiguous(), h.imag.contiguous())
