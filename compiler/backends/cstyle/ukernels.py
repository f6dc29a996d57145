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

"""

#: vector lengths a micro-kernel has a register-tile branch for, widest first
LENGTHS = (16, 8, 4)


def name(rows: int, gj: int) -> str:
    return f"rn_ugemm_{rows}x{gj}"


def _vector_body(rows: int, gj: int, vl: int) -> list[str]:
    nv = gj // vl
    ty = f"rn_v{vl}"
    out = [f"  {ty} " + ", ".join(f"c{m}_{v} = {{0}}" for m in range(rows) for v in range(nv)) + ";",
           "  for (long k = 0; k < K; ++k) {",
           f"    const float* wk = w + k * {gj};"]
    out += [f"    const {ty} w{v} = *(const {ty}*)(wk + {v * vl});" for v in range(nv)]
    for m in range(rows):
        out.append(f"    const float a{m} = a[{m}][k];")
        out += [f"    c{m}_{v} += w{v} * a{m};" for v in range(nv)]
    out.append("  }")
    out += [f"  *({ty}*)(acc + {m * gj + v * vl}) = c{m}_{v};" for m in range(rows) for v in range(nv)]
    return out


def _scalar_body(rows: int, gj: int) -> list[str]:
    return [f"  for (long i = 0; i < {rows * gj}; ++i) acc[i] = 0.0f;",
            "  for (long k = 0; k < K; ++k) {",
            f"    for (long m = 0; m < {rows}; ++m) {{",
            "      const float am = a[m][k];",
            f"      for (long q = 0; q < {gj}; ++q) acc[m * {gj} + q] += am * w[k * {gj} + q];",
            "    }",
            "  }"]


def render(rows: int, gj: int) -> str:
    """The C text of micro-kernel ``name(rows, gj)``:
    ``void f(long K, const float* const* a, const float* w, float* acc)`` with row pointers ``a``."""
    lines = [f"static inline void {name(rows, gj)}(long K, const float* const* a, const float* __restrict__ w, "
             "float* __restrict__ acc) {"]
    branches = [vl for vl in LENGTHS if gj % vl == 0]
    for i, vl in enumerate(branches):
        lines.append(f"#{'if' if i == 0 else 'elif'} RN_VL >= {vl}")
        lines += _vector_body(rows, gj, vl)
    if branches:
        lines.append("#else")
    lines += _scalar_body(rows, gj)
    if branches:
        lines.append("#endif")
    lines.append("}")
    return "\n".join(lines) + "\n"
