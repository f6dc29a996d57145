"""The register-tile GEMM micro-kernels, every ISA branch against numpy's matmul.

Each branch of a micro-kernel (vector length 16, 8, 4, plain C) is selected by the ``-march`` it
is compiled with, so each is built into a small program with that ``-march`` and run where it
can run: natively on x86 (SSE2 = 4 lanes, x86-64-v3 = 8, x86-64-v4 = 16 where this CPU has
AVX-512), under ``qemu-aarch64`` for NEON (Debian's ``gcc-aarch64-linux-gnu`` and
``qemu-user``, installed by ``make setup``).  The AVX-512 branch is always compiled; it is run
only on a CPU with AVX-512 (the skip says so: no emulator here executes AVX-512).

The int8 kernels (weight-only quantized codes widened in registers) are checked the same way,
on codes that span the whole int8 range; each ISA's widening is its own code (AVX-512, AVX2,
AVX without AVX2, SSE4.1, SSE2, NEON, plain C), so each has a build here."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from rnnc.backends.cstyle import ukernels
from rnnc.targets.host import host_flags

K = 37  # odd, so no branch can rely on an even trip count (kernels with one accumulator set)

HARNESS = """
#include <stdio.h>
{prelude}
{kernel}
int main(void) {{
  static float a_data[{rows}][{k}], acc[{rows} * {gj}];
  static {wtype} w[{k} * {gj}];
  const float* a[{rows}];
  for (int m = 0; m < {rows}; ++m) {{
    for (int k = 0; k < {k}; ++k) a_data[m][k] = (float)((m * 7 + k * 3) % 11) - 5.0f;
    a[m] = a_data[m];
  }}
  for (int i = 0; i < {k} * {gj}; ++i) w[i] = {weight};
  {name}({k}, a, w, acc);
  printf("%d\\n", RN_VL);
  for (int i = 0; i < {rows} * {gj}; ++i) printf("%.9g\\n", acc[i]);
  return 0;
}}
"""

#: (compiler, flags, runner prefix, expected vector length)
BUILDS = {
    "sse2": ("gcc", ["-march=x86-64"], [], 4),
    "sse4.1": ("gcc", ["-march=x86-64", "-msse4.1"], [], 4),
    "avx": ("gcc", ["-march=x86-64", "-mavx"], [], 8),
    "avx2": ("gcc", ["-march=x86-64-v3"], [], 8),
    "avx512": ("gcc", ["-march=x86-64-v4"], [], 16),
    "plain-c": ("gcc", ["-march=x86-64", "-U__SSE2__"], [], 0),
    "neon": ("aarch64-linux-gnu-gcc", ["-march=armv8-a", "-static"], ["qemu-aarch64"], 4),
}


#: weights per element type: quarters (float) and codes over the whole int8 range
WEIGHTS = {
    "float": ("float", "(float)((i * 5) % 13) * 0.25f - 1.5f", lambda i: float((i * 5) % 13) * 0.25 - 1.5),
    "int8": ("signed char", "(signed char)((i * 37) % 256 - 128)", lambda i: float((i * 37) % 256 - 128)),
}


def _expected(rows: int, gj: int, k: int, wtype: str) -> np.ndarray:
    a = np.array([[float((m * 7 + kk * 3) % 11) - 5.0 for kk in range(k)] for m in range(rows)])
    w = np.array([WEIGHTS[wtype][2](i) for i in range(k * gj)]).reshape(k, gj)
    return (a @ w).reshape(-1)


def _build(tmp_path, build: str, rows: int, gj: int, wtype: str = "float", parts: int = 1, k: int = K):
    cc, flags, _, _ = BUILDS[build]
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is missing: `make setup` installs it (gcc-aarch64-linux-gnu)")
    name = ukernels.name(rows, gj, wtype, parts)
    src = tmp_path / f"uk_{build.replace('.', '')}_{name}.c"
    src.write_text(HARNESS.format(prelude=ukernels.PRELUDE, kernel=ukernels.render(rows, gj, wtype, parts),
                                  rows=rows, gj=gj, k=k, name=name, wtype=WEIGHTS[wtype][0],
                                  weight=WEIGHTS[wtype][1]))
    exe = tmp_path / src.stem
    subprocess.run([cc, "-O2", "-Wall", "-Werror", *flags, str(src), "-o", str(exe)], check=True,
                   capture_output=True, text=True)
    return exe


def _run(exe, build: str) -> np.ndarray:
    runner, lanes = BUILDS[build][2], BUILDS[build][3]
    if build == "avx512" and "avx512f" not in host_flags():
        pytest.skip("compiled only: this CPU has no AVX-512 and no emulator here executes it")
    if runner and shutil.which(runner[0]) is None:
        pytest.fail(f"{runner[0]} is missing: `make setup` installs qemu-user")
    out = subprocess.run([*runner, str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert int(out[0]) == lanes  # the branch this -march selects
    return np.array([float(v) for v in out[1:]])


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize(("rows", "gj"), [(3, 32), (4, 64), (2, 24), (6, 16), (2, 12)])
def test_micro_kernel_branch_matches_numpy(tmp_path, build, rows, gj):
    exe = _build(tmp_path, build, rows, gj)  # every branch compiles, -Wall -Werror, on any host
    # small integers and quarters: every partial sum is exact in float32, whatever the order
    np.testing.assert_array_equal(_run(exe, build), _expected(rows, gj, K, "float"))


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize(("rows", "gj", "parts", "k"), [(4, 64, 1, K), (3, 24, 1, K), (1, 64, 4, 36), (1, 12, 2, 38),
                                                        (1, 32, 4, 36)])
def test_int8_micro_kernel_branch_matches_numpy(tmp_path, build, rows, gj, parts, k):
    """int8 codes -128..127 widened per ISA, with interleaved accumulator sets for one row; the
    products and sums stay integers below 2**24, so float32 is exact in any order."""
    exe = _build(tmp_path, build, rows, gj, "int8", parts, k)
    np.testing.assert_array_equal(_run(exe, build), _expected(rows, gj, k, "int8"))


def test_one_row_sets_shrink_to_the_chain_budget():
    """Four sets of a 64-wide row are 16 chains on AVX-512 (too many registers beside the weight
    vectors): that branch keeps two sets, the 4-wide one keeps one."""
    text = ukernels.render(1, 64, "int8", 4)
    branches = text.split("#if RN_VL >= 16")[1].split("#elif RN_VL >= 8")
    assert "k += 2)" in branches[0] and "k += 1)" in branches[1].split("#elif RN_VL >= 4")[1]


def test_uneven_shapes_fall_back_to_a_narrower_vector_or_plain_c():
    """``gj`` = 12 has no 16- or 8-wide branch: a 4-wide one (any SIMD ISA) or plain C."""
    text = ukernels.render(2, 12)
    assert "RN_VL >= 16" not in text and "RN_VL >= 8" not in text and "RN_VL >= 4" in text and "#else" in text
    assert "RN_VL" not in ukernels.render(1, 3).split("{", 1)[1]  # no vector branch at all
