"""GPTQ: error-compensating weight rounding from calibrated input second moments.

Round-to-nearest minimises each weight's own error, but what matters is the layer's output
error ``||X W^T - X Q^T||^2 = sum_rows (w - q) H (w - q)^T`` with ``H = X^T X`` (calibration
inputs, ``calibrate(..., hessian=True)``).  GPTQ (Frantar et al. 2022, after Optimal Brain
Quantization) quantizes the input columns one after another and, after each, moves the part of
its rounding error that correlated inputs can absorb onto the columns not yet quantized: with
``U`` the upper Cholesky factor of ``H^-1``, column ``i``'s error ``e = (w_i - q_i) / U_ii``
updates ``w_j -= e U_ij`` for ``j > i``.  Every row is independent, so all output channels are
processed together.  Inputs that never carry signal (``H_ii = 0``) and channels kept in float
(they reach the integer product as zeros) get no share of the error.

The output format is exactly the round-to-nearest one (``weights.weight_format``): int4
group-wise scales are taken from the *updated* weights when a group starts (errors pushed into a
group can widen its range), int8 per-channel scales from the original rows.  Damping (a fraction
of the mean diagonal added to ``H``) keeps the inverse well conditioned when calibration saw
fewer independent inputs than the layer has columns.
"""

from __future__ import annotations

import torch

from rnnc.quant.weights import QMAX, QuantizedWeight, mse_group_scales, weight_format


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + damp * mean(diag H) I)^-1``; more damping if that fails
    (a rank-deficient H whose damped form is still numerically singular)."""
    diag = torch.diagonal(h)
    base = float(diag.mean()) if diag.numel() and float(diag.mean()) > 0 else 1.0
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    for k in range(6):
        lower, info = torch.linalg.cholesky_ex(h + (damp * 10 ** k) * base * eye)
        if int(info) == 0:
            hinv = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(hinv, upper=True)
            if int(info) == 0:
                return upper
    raise ValueError("GPTQ: the calibration Hessian stays singular after damping")


def prepare_hessian(h: torch.Tensor, dead: torch.Tensor | None = None) -> torch.Tensor:
    """``H`` in float64 with the ``dead`` inputs (kept channels, never-active inputs) cut off:
    zero rows and columns and a unit diagonal, so they neither pass nor receive error."""
    h = h.detach().to(torch.float64).clone()
    mask = torch.diagonal(h) <= 0
    if dead is not None:
        mask[dead] = True
    h[mask, :] = 0.0
    h[:, mask] = 0.0
    idx = mask.nonzero().reshape(-1)
    h[idx, idx] = 1.0
    return h


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, bits: int, group: int = 32, group8: int = 0,
                  damp: float = 0.01, mse: bool = False, dead: torch.Tensor | None = None,
                  act_order: bool = False) -> QuantizedWeight:
    """GPTQ codes and scales for a ``[out, in]`` weight, in the format round-to-nearest would use.

    ``hessian``: ``[in, in]`` sum of ``x x^T`` over the calibration inputs of this weight (after
    any smoothing/rotation of ``x``).  ``dead``: input indices whose products do not count (kept
    in float).  ``mse``: group scales searched for the least ``diag(H)``-weighted error.
    ``act_order``: columns in order of decreasing ``H_ii`` (the inputs with the most energy are
    rounded first, while the most columns are left to absorb their error); group scales are then
    fixed up front from the original weights, since a group's columns are no longer contiguous.
    """
    if w.dim() != 2 or hessian.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"GPTQ needs a [out, in] weight and an [in, in] Hessian, got {tuple(w.shape)} and "
                         f"{tuple(hessian.shape)}")
    fbits, fgroup = weight_format(w, bits, group, group8)
    qmax = QMAX[fbits]
    h = prepare_hessian(hessian, dead)
    work = w.detach().to(torch.float64).clone()
    n_out, n_in = work.shape
    imp = torch.diagonal(h).to(torch.float32)
    perm = torch.argsort(torch.diagonal(h), descending=True, stable=True) if act_order else torch.arange(n_in)
    h = h[perm][:, perm]
    upper = _inverse_cholesky(h, damp)
    if fgroup:
        scale = torch.ones(n_out, n_in // fgroup, dtype=torch.float64)
        if act_order:  # static groups: every scale from the original weights
            scale = _group_scales(work, fbits, fgroup, qmax, mse, imp)
    else:
        absmax = work.abs().amax(dim=1)
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    work = work[:, perm]
    codes = torch.zeros_like(work)
    for k in range(n_in):
        i = int(perm[k])  # the column's original index: its group
        if fgroup and not act_order and i % fgroup == 0:  # the group's scale from its weights as updated so far
            scale[:, i // fgroup] = _group_scales(work[:, k:k + fgroup], fbits, fgroup, qmax, mse,
                                                  imp[i:i + fgroup]).reshape(-1)
        col_scale = scale[:, i // fgroup] if fgroup else scale
        col = work[:, k]
        q = torch.clamp(torch.round(col / col_scale), -qmax, qmax)
        codes[:, k] = q
        err = (col - q * col_scale) / upper[k, k]
        if k + 1 < n_in:
            work[:, k + 1:] -= torch.outer(err, upper[k, k + 1:])
    codes = codes[:, torch.argsort(perm)]
    return QuantizedWeight(codes.to(torch.int8), scale.to(torch.float32), fbits, fgroup)


def _group_scales(w: torch.Tensor, bits: int, group: int, qmax: int, mse: bool, imp: torch.Tensor) -> torch.Tensor:
    """``[out, in / group]`` symmetric scales of ``w`` (absmax, or the least weighted squared error)."""
    if mse:
        return mse_group_scales(w.to(torch.float32), bits, group, importance=imp).scale.to(torch.float64)
    amax = w.reshape(w.shape[0], -1, group).abs().amax(dim=2)
    return torch.where(amax > 0, amax / qmax, torch.ones_like(amax))


def output_error(w: torch.Tensor, deq: torch.Tensor, hessian: torch.Tensor) -> float:
    """``sum_n ||x_n (W - W_q)^T||^2`` computed from ``H = sum x x^T`` (the objective GPTQ lowers)."""
    d = (w.detach().to(torch.float64) - deq.detach().to(torch.float64))
    return float(torch.einsum("oi,ij,oj->", d, hessian.to(torch.float64), d))
