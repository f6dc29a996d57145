"""Register-tile GEMM micro-kernels for the C dialect, one per (rows, outputs) shape and ISA.

A fused layer's GEMMs (the recurrent product per step, the input projection per time chunk)
are ``acc[rows, gj] = A[rows, K] @ W[K, gj]`` with ``W`` a packed, contiguous tile.  The fast
form keeps ``rows x gj`` accumulators in vector registers, loads each weight vector once per
``k`` and broadcasts one ``A`` element per row: ``gj / VL`` loads and ``rows`` broadcasts feed
``rows * gj / VL`` FMAs.  gcc does not find that form from loops (see ``MicroGemm``), so it is
written here with GCC vector extensions: explicit accumulator variables, one branch per vector
length chosen by the preprocessor from the ``-march`` the kernel is built with (AVX-512: 16
floats, AVX/AVX2: 8, NEON/SSE: 4; the widest that divides ``gj`` and the ISA has), and a
plain-C loop for anything else, so the same source is
correct everywhere and the vector branch is the ISA-specific micro-kernel.  The vector types
are unaligned (``aligned(4)``) and ``may_alias`` so they load from any float pointer.
"""

from __future__ import annotations

#: preprocessor choice of the vector length in floats, and the vector types per length
PRELUDE = """\
#if defined(__AVX512F__)
#define RN_VL 16
#elif defined(__AVX__)
#define RN_VL 8
#elif defined(__ARM_NEON) || defined(__SSE2__)
#define RN_VL 4
#else
#define RN_VL 0
#endif
typedef float rn_v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef float rn_v8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef float rn_v4 __attribute__((vector_size(16), aligned(4), may_alias));
#if defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif
#include <string.h>
/* int8 codes widened exactly to float vectors (gcc 12 scalarises __builtin_convertvector
   from chars, so each ISA's sign-extending widen is named) */
#if defined(__AVX512F__)
static inline rn_v16 rn_i8x16(const signed char* p) {
  return (rn_v16)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}
#endif
#if defined(__AVX2__)
static inline rn_v8 rn_i8x8(const signed char* p) {
  return (rn_v8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}
#elif defined(__AVX__)
static inline rn_v8 rn_i8x8(const signed char* p) {
  __m128i b = _mm_loadl_epi64((const __m128i*)p);
  __m256i i = _mm256_set_m128i(_mm_cvtepi8_epi32(_mm_srli_si128(b, 4)), _mm_cvtepi8_epi32(b));
  return (rn_v8)_mm256_cvtepi32_ps(i);
}
#endif
static inline rn_v4 rn_i8x4(const signed char* p) {
  int b;
  memcpy(&b, p, 4);
#if defined(__SSE4_1__)
  return (rn_v4)_mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(b)));
#elif defined(__SSE2__)
  __m128i v = _mm_cvtsi32_si128(b);
  v = _mm_unpacklo_epi8(v, v);
  return (rn_v4)_mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(v, v), 24));
#elif defined(__ARM_NEON)
  int8x8_t v = vreinterpret_s8_s32(vdup_n_s32(b));
  return (rn_v4)vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(v))));
#else
  return (rn_v4){(float)p[0], (float)p[1], (float)p[2], (float)p[3]};
#endif
}

"""

#: vector lengths a micro-kernel has a register-tile branch for, widest first
LENGTHS = (16, 8, 4)

#: independent accumulator vectors a one-row tile's interleaved ``k`` sets aim for: two FMA
#: pipes times four cycles of latency, and half of AVX2's 16 registers
CHAINS = 8

#: C element type of the weight panel per ``wtype``
WEIGHT_C = {"float": "float", "int8": "signed char"}


def name(rows: int, gj: int, wtype: str = "float", parts: int = 1) -> str:
    suffix = ("" if wtype == "float" else f"_{wtype}") + ("" if parts == 1 else f"_p{parts}")
    return f"rn_ugemm_{rows}x{gj}{suffix}"


def _weight_vector(ty: str, vl: int, wtype: str, at: str) -> str:
    """One weight vector at ``at``: float weights load as they are; int8 codes load ``vl`` bytes
    and widen exactly to floats in registers (AVX-512: ``vpmovsxbd`` + ``vcvtdq2ps``), so the
    panel streams a quarter of the bytes and the widening is paid once for all rows."""
    if wtype == "int8":
        return f"rn_i8x{vl}({at})"
    return f"*(const {ty}*)({at})"


def _vector_body(rows: int, gj: int, vl: int, wtype: str, parts: int) -> list[str]:
    """``parts`` sets of ``rows x gj/vl`` accumulators take interleaved ``k`` (``k % parts``): a
    one-row tile has only ``gj/vl`` independent FMA chains per ``k``, too few to cover the FMA
    latency, and the sets are summed once at the end.  A branch takes at most enough sets for
    ``CHAINS`` chains (halving ``parts``, a power of two, keeps ``K`` a multiple of it), so
    narrow ISAs with 16 registers do not spill."""
    nv = gj // vl
    while parts > 1 and parts * rows * nv > CHAINS:
        parts //= 2
    ty = f"rn_v{vl}"
    out = [f"  {ty} " + ", ".join(f"c{p}_{m}_{v} = {{0}}" for p in range(parts) for m in range(rows)
                                  for v in range(nv)) + ";",
           f"  for (long k = 0; k < K; k += {parts}) {{"]
    for p in range(parts):
        out.append(f"    const {WEIGHT_C[wtype]}* wk{p} = w + (k + {p}) * {gj};")
        out += [f"    const {ty} w{p}_{v} = {_weight_vector(ty, vl, wtype, f'wk{p} + {v * vl}')};" for v in range(nv)]
        for m in range(rows):
            out.append(f"    const float a{p}_{m} = a[{m}][k + {p}];")
            out += [f"    c{p}_{m}_{v} += w{p}_{v} * a{p}_{m};" for v in range(nv)]
    out.append("  }")
    for m in range(rows):
        for v in range(nv):
            total = " + ".join(f"c{p}_{m}_{v}" for p in range(parts))
            out.append(f"  *({ty}*)(acc + {m * gj + v * vl}) = {total};")
    return out


def _scalar_body(rows: int, gj: int) -> list[str]:
    return [f"  for (long i = 0; i < {rows * gj}; ++i) acc[i] = 0.0f;",
            "  for (long k = 0; k < K; ++k) {",
            f"    for (long m = 0; m < {rows}; ++m) {{",
            "      const float am = a[m][k];",
            f"      for (long q = 0; q < {gj}; ++q) acc[m * {gj} + q] += am * (float)w[k * {gj} + q];",
            "    }",
            "  }"]


def render(rows: int, gj: int, wtype: str = "float", parts: int = 1) -> str:
    """The C text of micro-kernel ``name(rows, gj, wtype, parts)``:
    ``void f(long K, const float* const* a, const W* w, float* acc)`` with row pointers ``a`` and
    ``W`` the weight element type (``WEIGHT_C``); ``K`` must be a multiple of ``parts``."""
    lines = [f"static inline void {name(rows, gj, wtype, parts)}(long K, const float* const* a, "
             f"const {WEIGHT_C[wtype]}* __restrict__ w, float* __restrict__ acc) {{"]
    branches = [vl for vl in LENGTHS if gj % vl == 0]
    for i, vl in enumerate(branches):
        lines.append(f"#{'if' if i == 0 else 'elif'} RN_VL >= {vl}")
        lines += _vector_body(rows, gj, vl, wtype, parts)
    if branches:
        lines.append("#else")
    lines += _scalar_body(rows, gj)
    if branches:
        lines.append("#endif")
    lines.append("}")
    return "\n".join(lines) + "\n"
