"""The C twin of the CUDA kernel's fp16/bf16 storage: CPU numerics of half-precision kernels.

The CUDA dialect stores weights, ``x`` and ``y`` in ``__half`` / ``__nv_bfloat16`` and does all
arithmetic in fp32 (states and the double-buffered hidden state stay fp32).  This dialect
renders the same loop nest for a CPU with the same storage and the same widening/narrowing
points, so a GPU-less machine checks what the GPU kernel computes.

Storage is 16-bit integer bits with explicit conversions: gcc 12 (this project's CI) has
``_Float16`` on x86-64 but no ``__bf16`` arithmetic type.  fp16 converts through
``_Float16`` (IEEE round-to-nearest-even, like ``__float2half``); bf16 widens by a 16-bit shift
and narrows with round-to-nearest-even on the bits (like ``__float2bfloat16``; NaN stays NaN).
"""

from __future__ import annotations

from typing import Any

from rnnc.backends.cstyle.dialects import CDialect
from rnnc.backends.cstyle.runtime import LayerRunner
from rnnc.lower.loopnest import Buffer, Kernel

_HALF_HELPERS = """\
#include <string.h>
static inline float rn_h2f(unsigned short u) { _Float16 h; memcpy(&h, &u, 2); return (float)h; }
static inline unsigned short rn_f2h(float f) { _Float16 h = (_Float16)f; unsigned short u; memcpy(&u, &h, 2);
  return u; }
static inline float rn_b2f(unsigned short u) { unsigned w = (unsigned)u << 16; float f; memcpy(&f, &w, 4);
  return f; }
static inline unsigned short rn_f2b(float f) { unsigned w; memcpy(&w, &f, 4);
  if ((w & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  w += 0x7fffu + ((w >> 16) & 1u); return (unsigned short)(w >> 16); }

"""
_WIDEN = {"float16": "rn_h2f({})", "bfloat16": "rn_b2f({})"}
_NARROW = {"float16": "rn_f2h({})", "bfloat16": "rn_f2b({})"}


class CHalfDialect(CDialect):
    """C dialect with fp16/bf16 storage of ``param`` buffers and fp32 arithmetic."""

    storage = {"float32": "float", "float16": "unsigned short", "bfloat16": "unsigned short"}

    def widen(self, b: Buffer, text: str) -> str:
        if b.dtype == "param" and self.dtype in _WIDEN:
            return _WIDEN[self.dtype].format(text)
        return super().widen(b, text)

    def narrow(self, b: Buffer, text: str) -> str:
        if b.dtype == "param" and self.dtype in _NARROW:
            return _NARROW[self.dtype].format(text)
        return super().narrow(b, text)

    def preamble(self) -> str:
        return super().preamble() + _HALF_HELPERS


def torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


class HalfLayerRunner(LayerRunner):
    """A :class:`LayerRunner` whose ``param`` buffers (weights; the caller's ``x``/``y``) are in
    the kernel's storage dtype, as the CUDA kernel expects them; states stay fp32."""

    def __init__(self, kernel: Kernel, fn: Any, params: dict[str, Any], dtype: str, workers: int = 0) -> None:
        super().__init__(kernel, fn, params, workers)
        store = torch_dtype(dtype)
        for b in kernel.args:
            if b.dtype == "param" and b.name in self.tensors:
                self.tensors[b.name] = self.tensors[b.name].to(store).contiguous()
        # the hosted input projection (Knobs.host_gemm) from the rounded weights, in fp32, as
        # the CUDA runner's cuBLAS GEMM computes it
        self.hosted = {buf: self.tensors[w].float().t().contiguous()
                       for buf, w in kernel.meta.get("host_gemm", {}).items()}
