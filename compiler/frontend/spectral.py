"""``torch.stft`` front ends: the transform as a strided conv1d with a fixed DFT basis.

Why: speech and sound models often start with ``torch.stft(wave, ...).abs()`` (a VAD, a
spectrogram tagger).  The IR has no complex dtype, and it needs none: a short-time Fourier
transform is a 1-d convolution of the (centre-padded) signal with ``window[n] * cos(2 pi k n / N)``
and ``-window[n] * sin(2 pi k n / N)``, hop as stride -- ops every backend and ONNX already
render.  The result is a :class:`ComplexTV` (real and imaginary parts as two values); the
operations models apply to it (``abs``, ``real``, ``imag``, ``view_as_real``, ``pow``) are real
arithmetic on the parts.  Anything else on a complex value is refused by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from rnnc.frontend.handlers import HANDLERS, handles, is_tensor
from rnnc.frontend.values import TV, Ctx


@dataclass
class ComplexTV:
    """A complex tensor as its real and imaginary parts (same shape)."""

    re: TV
    im: TV


def _basis(n_fft: int, window: torch.Tensor, onesided: bool) -> torch.Tensor:
    """``[2F, 1, n_fft]``: the F cosine rows, then the F (negated) sine rows, windowed."""
    bins = n_fft // 2 + 1 if onesided else n_fft
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * n / n_fft
    w = window.double()
    return torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w]).float()[:, None, :]


@handles("stft")
def stft(ctx: Ctx, x: TV, n_fft: int, hop_length: int | None = None, win_length: int | None = None,
         window: Any = None, center: bool = True, pad_mode: str = "reflect", normalized: bool = False,
         onesided: bool | None = None, return_complex: bool | None = None, align_to_window: Any = None) -> Any:
    if not is_tensor(x) or x.rank not in (1, 2) or x.ex.is_complex() or align_to_window:
        return NotImplemented
    n_fft = int(n_fft)
    hop = int(hop_length) if hop_length is not None else n_fft // 4
    win = int(win_length) if win_length is not None else n_fft
    if window is None:
        w = torch.ones(win)
    elif isinstance(window, TV) and window.value is not None and window.value.name in ctx.weights:
        w = ctx.weights[window.value.name].detach().float()
    elif isinstance(window, torch.Tensor):
        w = window.detach().float()
    else:
        raise ctx.unsupported("stft with a window computed from the inputs", "a constant window")
    left = (n_fft - w.numel()) // 2  # torch centres a shorter window inside n_fft
    w = torch.nn.functional.pad(w, (left, n_fft - w.numel() - left))
    sig = ctx.emit("unsqueeze", x, axis=0 if x.rank == 1 else 1)  # [B, 1, L]
    if x.rank == 1:
        sig = ctx.emit("unsqueeze", sig, axis=0)
    if center:
        if pad_mode not in ("reflect", "constant", "replicate"):
            raise ctx.unsupported(f"stft with pad_mode={pad_mode!r}", "reflect, constant, replicate")
        sig = ctx.emit("pad", sig, pads=(n_fft // 2, n_fft // 2), mode=pad_mode, value=0.0)
    one = bool(onesided) if onesided is not None else True
    basis = _basis(n_fft, w, one) * (n_fft ** -0.5 if normalized else 1.0)
    spec = ctx.emit("conv1d", sig, ctx.param(basis, "stft_basis"), None, stride=hop, padding=0, dilation=1, groups=1)
    bins = int(basis.shape[0]) // 2
    re, im = ctx.emit("split", spec, axis=1, sizes=(bins, bins))
    if x.rank == 1:
        re, im = ctx.emit("squeeze", re, axis=0), ctx.emit("squeeze", im, axis=0)
    out = ComplexTV(re, im)
    return out if return_complex is not False else view_as_real(ctx, out)


def view_as_real(ctx: Ctx, c: ComplexTV) -> TV:
    return ctx.emit("stack", c.re, c.im, axis=c.re.rank)


def magnitude(ctx: Ctx, c: ComplexTV) -> TV:
    return ctx.emit("sqrt", ctx.emit("add", ctx.emit("mul", c.re, c.re), ctx.emit("mul", c.im, c.im)))


def complex_call(ctx: Ctx, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A call with a complex value among its arguments: the few operations spectrogram front ends
    use, else one clear refusal."""
    c = args[0] if args and isinstance(args[0], ComplexTV) else None
    if c is not None and name == "abs":
        return magnitude(ctx, c)
    if c is not None and name == "getattr" and args[1] in ("real", "imag"):
        return c.re if args[1] == "real" else c.im
    if c is not None and name == "getattr" and args[1] == "shape":
        return HANDLERS["getattr"](ctx, c.re, "shape")
    if c is not None and name == "view_as_real":
        return view_as_real(ctx, c)
    raise ctx.unsupported(f"{name} of a complex value (a torch.stft result)",
                          "abs, .real, .imag, view_as_real on torch.stft results")
