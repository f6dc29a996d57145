"""The outlier treatments, as plain tensor math on one site (an activation and its weight).

Why each exists: a per-tensor activation scale is set by the largest channel, so one channel
that runs 50x hotter than the rest (Silero's spectrum, Mamba's gated states) leaves the others a
handful of int8 levels.  The four answers, each selectable on its own:

* ``keep`` (LLM.int8 / Mamba-PTQ): detect the hot channels from calibration (max |x| over the
  median channel's max |x|) and keep them in float; the rest is quantized without them.
* ``smooth`` (SmoothQuant): divide channel j of x by ``s_j`` and multiply column j of W by it,
  ``s_j = max|x_j|^a / max|W_j|^(1-a)``; the product is unchanged, the difficulty is shared.
* ``rotate`` (QuaRot / Quamba): ``x W^T = (x R)(W R)^T`` for an orthogonal R; a randomized
  Hadamard R spreads a hot channel over all channels.
* ``clip``: a static activation scale from a percentile of |x| instead of its max, trading a
  few saturated values for resolution everywhere else.
"""

from __future__ import annotations

import functools

import torch

from rnnc.quant.calibrate import ChannelStats


def detect_outliers(stats: ChannelStats, threshold: float, max_fraction: float) -> list[int]:
    """Channels whose max |x| exceeds ``threshold`` times the median channel's, hottest first,
    at most ``max_fraction`` of the channels (a budget: kept channels cost float compute)."""
    ratio = stats.outlier_ratio()
    budget = max(1, int(max_fraction * ratio.numel())) if ratio.numel() > 1 else 0
    order = torch.argsort(ratio, descending=True)
    return [int(i) for i in order[:budget] if float(ratio[i]) > threshold]


def smoothing_factors(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's per-input-channel divisor ``s`` (x / s, W * s), clamped to a sane range.

    ``weight`` is ``[out, in, ...]``; channels never seen active keep ``s = 1``.
    """
    w_absmax = weight.detach().abs().transpose(0, 1).reshape(weight.shape[1], -1).amax(dim=1).to(torch.float64)
    a = act_absmax.to(torch.float64)
    s = a.clamp(min=1e-8).pow(alpha) / w_absmax.clamp(min=1e-8).pow(1.0 - alpha)
    s = torch.where((a > 0) & (w_absmax > 0), s, torch.ones_like(s))
    return s.clamp(1e-4, 1e4).to(torch.float32)


def hadamard_block(n: int) -> int:
    """The largest power of two dividing ``n``: the Hadamard block a rotation of n channels uses."""
    return n & -n if n > 0 else 1


@functools.lru_cache(maxsize=16)
def random_hadamard(n: int, seed: int = 0) -> torch.Tensor:
    """An orthogonal ``[n, n]`` matrix: random signs times a block-diagonal normalized
    Sylvester Hadamard matrix (blocks of ``hadamard_block(n)``; one block when n is a power of 2).

    Cached: every site of width n shares the one tensor, so the rewrite stores it once (tensors
    are never mutated in rnnc)."""
    b = hadamard_block(n)
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < b:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    h = h / h.shape[0] ** 0.5
    blocks = torch.block_diag(*([h] * (n // b)))
    gen = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
    return (signs.view(-1, 1) * blocks).to(torch.float32)


def clip_scale(stats: ChannelStats, percentile: float) -> float:
    """Static symmetric int8 scale from the ``percentile``-th percentile of |x|."""
    r = stats.percentile(percentile)
    if r <= 0:
        r = float(stats.absmax.max()) if stats.absmax is not None else 0.0
    return (r if r > 0 else 1.0) / 127.0
