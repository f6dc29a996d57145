"""The one tolerance table (docs/design.md convention 8): every numerical test imports it.

Keyed by (dtype, backend).  ``interp`` is the IR interpreter, ``reference`` the plain-torch cell
references; compiled backends add their rows here rather than loosening asserts in tests.
Absolute and relative tolerances follow ``torch.testing.assert_close`` semantics.
"""

from __future__ import annotations

from typing import Any

#: (dtype, backend) -> (atol, rtol)
TOLERANCES: dict[tuple[str, str], tuple[float, float]] = {
    ("float32", "interp"): (2e-5, 1e-4),
    ("float32", "reference"): (2e-5, 1e-4),
    ("float32", "torch"): (2e-5, 1e-4),
    ("float64", "interp"): (1e-10, 1e-8),
    ("float64", "reference"): (1e-10, 1e-8),
    ("float16", "interp"): (2e-3, 2e-3),
    ("bfloat16", "interp"): (2e-2, 2e-2),
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
    # another order lands on a rounding tie (one code, ~1/127 of that activation's range, carried
    # on by the recurrence); largest error seen: 2.4e-7 (Silero VAD, NNAPI/QNN/XNNPACK QDQ)
    ("int8qdq", "onnxruntime"): (2e-2, 2e-2),
    # one-step LSTM as onnxruntime's DynamicQuantizeLSTM with batch > 1 and several intra-op
    # threads: it splits the batch across threads and quantizes each block's h with its own scale
    # (the IR: one scale per step), so a gate may move by a few quantization steps of h
    ("int8lstm", "onnxruntime"): (2e-2, 5e-2),
    # a parallel scan reassociates sums and products of up to T factors
    ("float32", "scan"): (1e-4, 1e-3),
    ("float64", "scan"): (1e-9, 1e-7),
}


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
