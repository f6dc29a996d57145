"""Shared pieces of the corpus: the ``Entry`` record, deterministic model building and input helpers.

Nothing here imports ``rnnc``; the corpus is plain PyTorch written the way public repositories write it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Entry:
    """One corpus model: how to build it, how to make inputs for it, and which input dims are dynamic."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, int], tuple[torch.Tensor, ...]]
    dynamic: tuple[dict[int, str] | None, ...]
    domain: str
    features: tuple[str, ...]
    length_multiple: int = 1
    min_length: int = 1


_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def _randomize_norms(model: nn.Module) -> None:
    """Give normalisation layers non-trivial statistics/affine params, as a trained checkpoint would have."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, _NORM_TYPES):
                if getattr(m, "weight", None) is not None:
                    m.weight.uniform_(0.8, 1.2)
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_(0.0, 0.1)


def seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Wrap a constructor: seed 0, construct, perturb norm stats, float32, eval mode."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        model = factory()
        _randomize_norms(model)
        return model.float().eval()

    return build


def gen(name: str, batch: int, length: int) -> torch.Generator:
    """A CPU generator seeded deterministically from (name, batch, length)."""
    return torch.Generator().manual_seed(zlib.crc32(f"{name}:{batch}:{length}".encode()))


def randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def random_lengths(g: torch.Generator, batch: int, length: int, low: int = 1, descending: bool = False) -> torch.Tensor:
    """int64 lengths in [low, length], with max == length (one random row is full length)."""
    low = max(1, min(low, length))
    lengths = torch.randint(low, length + 1, (batch,), generator=g, dtype=torch.int64)
    lengths[int(torch.randint(0, batch, (1,), generator=g))] = length
    if descending:
        lengths = lengths.sort(descending=True).values
    return lengths


def padded_tokens(g: torch.Generator, lengths: torch.Tensor, length: int, vocab: int, pad: int = 0) -> torch.Tensor:
    """int64 tokens in [1, vocab) of shape (batch, length), set to ``pad`` past each row's length."""
    tokens = torch.randint(1, vocab, (lengths.numel(), length), generator=g, dtype=torch.int64)
    mask = torch.arange(length)[None, :] >= lengths[:, None]
    return tokens.masked_fill(mask, pad)
