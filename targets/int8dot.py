"""Numpy models of each CPU's 8-bit integer dot product, and the bound that makes int8 exact.

Why a model: the integer result of an int8 ONNX model depends on the CPU that runs it.  On x86
without VNNI, onnxruntime's u8 x s8 GEMM multiplies with ``vpmaddubsw``, which adds each
*adjacent pair* of u8 x s8 products into an int16 with signed saturation (then ``vpmaddwd``
widens the pairs into int32 exactly); with VNNI (``vpdpbusd``), Arm ``udot``/``sdot`` or MLAS's
u8 x u8 kernels (both operands widened to int16, ``vpmaddwd``) every product reaches int32
exactly.  With these models a test on any machine can tell what a model computes on every target
(``tests/targets/test_int8dot.py`` checks the models against onnxruntime, natively and under an
emulated AVX2 CPU).

Numpy only: hardware semantics are data-like and must not pull in torch.
"""

from __future__ import annotations

import numpy as np

from rnnc.errors import UserInputError

from .spec import INT8_FORMATS, INT8_SEMANTICS, HardwareSpec

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
#: the largest u8 activation code (DynamicQuantizeLinear and QuantizeLinear both reach it)
A_MAX = 255
#: largest weight magnitude of each format (``u8`` stores full-range codes shifted by 128)
WEIGHT_QMAX = {"s8": 127, "s7": 63, "u8": 127}


def dot(a: np.ndarray, b: np.ndarray, semantics: str) -> np.ndarray:
    """``a @ b`` (``a`` u8 ``[M, K]``, ``b`` ``[K, N]`` s8 or u8 codes) as a CPU with ``semantics``
    computes it, in int64.  Pairs are ``(k, k+1)`` for even ``k`` (MLAS packs B that way; an odd
    ``K`` is padded with a zero), which ``tests/targets/test_int8dot.py`` confirms bit for bit."""
    if semantics not in INT8_SEMANTICS:
        raise ValueError(f"unknown int8 dot semantics {semantics!r}; known: {', '.join(INT8_SEMANTICS)}")
    a64, b64 = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    if semantics == "exact" or np.asarray(b).dtype == np.uint8:  # u8 x u8 widens to int16: exact
        return a64 @ b64
    if a64.shape[1] % 2:
        a64 = np.pad(a64, ((0, 0), (0, 1)))
        b64 = np.pad(b64, ((0, 1), (0, 0)))
    out = np.zeros((a64.shape[0], b64.shape[1]), np.int64)
    for k in range(0, a64.shape[1], 2):  # one vpmaddubsw lane pair at a time
        pair = np.outer(a64[:, k], b64[k]) + np.outer(a64[:, k + 1], b64[k + 1])
        out += np.clip(pair, INT16_MIN, INT16_MAX)
    return out


def pair_headroom(w: np.ndarray, axis: int = 0, a_max: int = A_MAX) -> int:
    """The most a pair sum of u8 x ``w`` products can reach, over every output and any pairing.

    Pairing-independent on purpose: ConvInteger, QLinearConv and DynamicQuantizeLSTM pack their
    weights their own way, so the bound takes the two largest same-signed weights of each output
    (``axis`` is the reduction axis).  A result <= 32767 proves the saturating path exact."""
    w = np.moveaxis(np.asarray(w).astype(np.int64), axis, -1)
    w = w.reshape(-1, w.shape[-1])
    if w.shape[-1] < 2:
        w = np.pad(w, ((0, 0), (0, 2 - w.shape[-1])))
    pos = -np.sort(-np.clip(w, 0, None), axis=1)[:, :2].sum(axis=1)
    neg = np.sort(np.clip(w, None, 0), axis=1)[:, :2].sum(axis=1)
    return int(max(pos.max(initial=0) * a_max, -neg.min(initial=0) * a_max - 1))  # int16 reaches -32768


def exact_on(w: np.ndarray, semantics: str, axis: int = 0) -> bool:
    """Whether an integer product of u8 activations with int8 codes ``w`` is exact on a CPU."""
    if semantics == "exact" or np.asarray(w).dtype == np.uint8:
        return True
    return pair_headroom(w, axis) <= INT16_MAX


def int8_target(target: str | HardwareSpec | None) -> HardwareSpec:
    """The CPU an int8 model is made exact for; a GPU or an unknown tag gets one sentence."""
    from . import get

    spec = get(target or "cpu/host")
    if spec.cpu is None:
        beside = f"; its CPU is {spec.companion_cpu}" if spec.companion_cpu else ""
        raise UserInputError(f"{spec.tag} is a GPU; rnnc's int8 models run on CPUs (onnxruntime's integer kernels), "
                             f"so name the CPU they will run on{beside} (e.g. cpu/host, cpu/x86-avx2, cpu/x86-avx512, "
                             f"cpu/arm64-neon or a target YAML file; `rnnc targets` lists them)")
    return spec


def weight_format(target: str | HardwareSpec | None, override: str = "") -> tuple[HardwareSpec, str]:
    """(the CPU spec, the integer format its weights get): ``override`` or the target's own."""
    spec = int8_target(target)
    fmt = override or spec.cpu.int8_dot.format
    if fmt not in INT8_FORMATS:
        raise UserInputError(f"unknown int8 format {fmt!r}; choose one of {', '.join(INT8_FORMATS)}")
    return spec, fmt
