"""The one tolerance table (docs/design.md convention 8): every numerical test imports it.

Keyed by (dtype, backend).  ``interp`` is the IR interpreter, ``reference`` the plain-torch cell
references; compiled backends add their rows here rather than loosening asserts in tests.
Absolute and relative tolerances follow ``torch.testing.assert_close`` semantics.  Beside the
table, ``OBSERVED`` holds the largest error the test suite saw for each row (written by
``tools/observed_tolerances.py``), so a row far looser than what it guards shows up as one.
"""

from __future__ import annotations

import os
from typing import Any

#: (dtype, backend) -> (atol, rtol)
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("float32", "interp"): (2e-5, 1e-4),
    ("float32", "reference"): (2e-5, 1e-4),
    ("float64", "interp"): (1e-10, 1e-8),
    ("float64", "reference"): (1e-10, 1e-8),
    # onnxruntime's MLAS kernels sum in a different order than torch (blocked GEMMs, fused gates);
    # over 1000 recurrent steps the rounding differences compound a little
    ("float32", "onnxruntime"): (5e-5, 2e-4),
    # C dialect: -ffast-math vectorised exp/tanh and blocked (reassociated) GEMM sums
    ("float32", "c"): (5e-5, 5e-4),
    # C twin of the CUDA kernel with fp16/bf16 storage (x, y, weights) and fp32 arithmetic, against
    # the fp32 interpreter run on the same storage-rounded x and weights, y rounded like the kernel's
    # output: only summation order (fp32) and one rounding step of y differ
    ("float16", "c"): (1e-3, 2e-3),
    ("bfloat16", "c"): (8e-3, 1.6e-2),
    # CUDA kernels on a GPU vs torch nn.LSTM/GRU on the CPU in fp32: warp-shuffle (reassociated)
    # sums and the GPU's expf/tanhf; fp16/bf16 storage as in the C rows above
    ("float32", "cuda"): (5e-5, 5e-4),
    ("float16", "cuda"): (1e-3, 2e-3),
    ("bfloat16", "cuda"): (8e-3, 1.6e-2),
    # TVM (llvm): its own exp/tanh/sigmoid lowering and register-blocked (reassociated) matmul sums
    ("float32", "tvm"): (5e-5, 2e-4),
    # Triton: tile-wise reassociated recurrent sums, tanh computed as 2*sigmoid(2x) - 1
    ("float32", "triton"): (5e-5, 2e-4),
    # Triton fp16/bf16 storage vs the fp32 reference on the same (rounded) weights and inputs:
    # fp32 arithmetic, but the hoisted input projection, the recurrent dot operands (fp16) and
    # y/final states are rounded to the storage dtype (bf16: 8 mantissa bits)
    ("float16", "triton"): (3e-3, 3e-3),
    ("bfloat16", "triton"): (3e-2, 3e-2),
    # quantized ONNX vs the quantized IR in the interpreter: integer sums are exact on both sides,
    # only the float rescale and gate math differ in order ("int8"); onnxruntime's MatMulNBits
    # quantizes activations per block inside the kernel, the IR per tensor ("int4a8")
    ("int8", "onnxruntime"): (1e-5, 1e-4),
    # a rotated (Hadamard) input reaches its dynamic quantizer through a float x @ R, which torch
    # and onnxruntime's sgemm sum in different orders: a value on a rounding tie may land one code
    # away (~1/255 of the step's range), which the recurrence carries to the output
    ("int8rotated", "onnxruntime"): (1e-2, 1e-2),
    ("int4a8", "onnxruntime"): (3e-2, 5e-2),
    # static int8 conv chains (QLinearConv writing the next conv's uint8 codes): requantisation
    # ties and the int32 bias may move one code of an inner activation (one quantization step,
    # ~1/127 of its range), which the following layers carry on to the output
    ("int8chain", "onnxruntime"): (5e-2, 5e-2),
    # QDQ int8 for a phone's provider run as its float meaning (QuantizeLinear -> DequantizeLinear
    # -> float MatMul/Conv): every input code equals the IR's unless a float product summed in
    # another order lands on a rounding tie; then one code moves (~1/127 of that activation's
    # range) and the recurrence carries it on, which is what the bound allows. No tie flipped in
    # the suite here (OBSERVED: under 1e-6), so a wrong zero point or scale still fails by far
    ("int8qdq", "onnxruntime"): (2e-2, 2e-2),
    # one-step LSTM as onnxruntime's DynamicQuantizeLSTM with batch > 1 and several intra-op
    # threads: it splits the batch across threads and quantizes each block's h with its own scale
    # (the IR: one scale per step), so a gate may move by a few quantization steps of h
    ("int8lstm", "onnxruntime"): (2e-2, 5e-2),
    # rnnc.trace's own check of a Program with symbolic dims against the eager model at twice the
    # example's sizes (frontend/dims.py): it looks for a baked size or a wrong op, not for the last
    # bits, so it allows what a long sequence's reassociated sums can drift
    ("float32", "trace-check"): (1e-3, 1e-3),
    # the same check of a model cast to fp16/bf16: the Program keeps states in fp32 and rounds
    # only what it stores (the kernels' mixed precision), torch's half layers round every step
    ("float16", "trace-check"): (3e-3, 3e-3),
    ("bfloat16", "trace-check"): (3e-2, 3e-2),
    # a parallel scan reassociates sums and products of up to T factors
    ("float32", "scan"): (1e-4, 1e-3),
    ("float64", "scan"): (1e-9, 1e-7),
}


# --- observed: written by tools/observed_tolerances.py
#: largest error the test suite saw per row (abs, share of the bound, comparisons); AMD EPYC, pytest exit 0
OBSERVED: dict[tuple[str, str], tuple[float, float, int] | None] = {
    ('float32', 'interp'): (4.58e-05, 0.169, 2668),
    ('float32', 'reference'): (0.0121, 0.206, 812),
    ('float64', 'interp'): (1.44e-15, 5.04e-06, 35),
    ('float64', 'reference'): (1.83e+15, 2.72e-05, 107),
    ('float32', 'onnxruntime'): (0.000183, 0.751, 898),
    ('float32', 'c'): (0.0179, 0.084, 1439),
    ('float16', 'c'): (0.000122, 0.0957, 13),
    ('bfloat16', 'c'): (8.94e-08, 7.36e-06, 14),
    ('float32', 'cuda'): None,  # no test exercises this row on this machine
    ('float16', 'cuda'): None,  # no test exercises this row on this machine
    ('bfloat16', 'cuda'): None,  # no test exercises this row on this machine
    ('float32', 'tvm'): (3.05e-05, 0.0595, 636),
    ('float32', 'triton'): (0.00439, 0.522, 639),
    ('float16', 'triton'): (0.00336, 0.431, 27),
    ('bfloat16', 'triton'): (0.0298, 0.197, 27),
    ('int8', 'onnxruntime'): (1.53e-05, 0.327, 284),
    ('int8rotated', 'onnxruntime'): (8.94e-08, 7.23e-06, 1),
    ('int4a8', 'onnxruntime'): (0.00485, 0.159, 4),
    ('int8chain', 'onnxruntime'): (0.0203, 0.399, 11),
    ('int8qdq', 'onnxruntime'): (9.24e-07, 3.58e-05, 12),
    ('int8lstm', 'onnxruntime'): (0.0057, 0.133, 24),
    ('float32', 'trace-check'): (2.86e-06, 0.000596, 1701),
    ('float16', 'trace-check'): (0.000798, 0.203, 13),
    ('bfloat16', 'trace-check'): (0.00586, 0.189, 18),
    ('float32', 'scan'): (0.547, 0.583, 1206),
    ('float64', 'scan'): (8.88e-16, 3.62e-08, 10),
}
# --- end observed

#: set to a file path: every ``assert_close`` appends the error it saw (``tools/observed_tolerances.py``)
LOG_ENV = "RNNC_TOLERANCE_LOG"


def _log(dtype: str, backend: str, actual: Any, expected: Any, atol: float, rtol: float) -> None:
    """Append one comparison's largest absolute error and its largest share of the allowed bound
    (``|a - e| / (atol + rtol |e|)``; 1.0 is the edge of the row) to the log file."""
    import json

    a, e = actual.double(), expected.to(actual.dtype).double()
    err = (a - e).abs()
    finite = err[err.isfinite()]  # inf == inf and nan == nan compare equal: no error to record
    if not finite.numel():
        return
    share = (err / (atol + rtol * e.abs()))[err.isfinite()].max().item()
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as f:
        f.write(json.dumps({"row": [dtype, backend], "abs": finite.max().item(), "share": share}) + "\n")


def tolerance(dtype: str, backend: str) -> tuple[float, float]:
    """(atol, rtol) for a dtype and backend; a missing row is an error, not a silent default."""
    try:
        return TOLERANCES[(dtype, backend)]
    except KeyError:
        raise KeyError(f"no tolerance row for dtype={dtype!r}, backend={backend!r}; add one to "
                       f"rnnc/tolerances.py") from None


def assert_close(actual: Any, expected: Any, dtype: str = "float32", backend: str = "interp",
                 msg: str = "") -> None:
    """``torch.testing.assert_close`` with the table's tolerance; reports the max abs difference."""
    import torch

    atol, rtol = tolerance(dtype, backend)
    actual = torch.as_tensor(actual)
    expected = torch.as_tensor(expected)
    try:
        torch.testing.assert_close(actual, expected.to(actual.dtype), atol=atol, rtol=rtol)
    except AssertionError as exc:
        diff = (actual.double() - expected.double()).abs().max().item() if actual.shape == expected.shape else None
        raise AssertionError(f"{msg} (max abs diff {diff}, atol {atol}, rtol {rtol}): {exc}") from None
    if os.environ.get(LOG_ENV) and actual.numel():  # passing comparisons only (a test may expect a failure)
        _log(dtype, backend, actual, expected, atol, rtol)


def is_close(actual: Any, expected: Any, dtype: str = "float32", backend: str = "interp") -> bool:
    """:func:`assert_close` as a predicate, for checks rnnc runs itself (``rnnc.trace``'s check of
    a Program at another size); a passing comparison is logged like a test's."""
    try:
        assert_close(actual, expected, dtype, backend)
    except AssertionError:
        return False
    return True
