"""fp16/bf16 numerics of the CUDA kernel without a GPU: its loop nest rendered in the C dialect with
the same 16-bit storage (x, y, weights) and fp32 arithmetic (``rnnc.backends.cstyle.chalf``),
against the fp32 IR interpreter run on the same storage-rounded inputs and weights."""

from __future__ import annotations

import pytest
import torch
from cstyle_cases import module, states

from rnnc.backends.cstyle.build import build_c, load_library
from rnnc.backends.cstyle.chalf import CHalfDialect, HalfLayerRunner, torch_dtype
from rnnc.ir import rnn_program
from rnnc.lower import lower_layer
from rnnc.lower.knobs import knobs_for
from rnnc.targets import get
from rnnc.tolerances import assert_close

#: GPU-shaped knobs: warps owning rows, lanes splitting K, part of R in registers (register_k not
#: a multiple of 32, rows not a multiple of the warps), several batch rows per block
GPU_KNOBS = [
    ("lstm", 40, {"register_k": 13, "threads": 64, "tile_hidden": 10, "batch_block": 2}),
    ("gru", 64, {"register_k": 40, "threads": 96, "tile_hidden": 16, "batch_block": 4}),
    ("lstm", 32, {}),  # the backend's own heuristic knobs: every weight in shared memory
]


def _run(name: str, hidden: int, knobs: dict, dtype: str, batch: int = 3, steps: int = 7) -> None:
    mod = module(name, hidden)
    cell, weights = mod.rnnc_layer()
    target = get("nvidia/a100-80gb")
    sched = None
    if knobs:
        sched = {**knobs_for(hidden, 4, target, dtype=dtype).to_dict(), **knobs}
        sched["workers"] = hidden // sched["tile_hidden"]
    kernel = lower_layer(cell, target, sched, dtype, name=f"half_{name}_{dtype}")
    assert kernel.meta["knobs"]["reduce_inner"] and kernel.meta["knobs"]["dtype"] == dtype
    src = CHalfDialect(kernel, dtype).render()
    fn = getattr(load_library(build_c(src)), kernel.name)
    store = torch_dtype(dtype)
    x = torch.randn(steps, batch, cell.input_size, generator=torch.Generator().manual_seed(3)).to(store)
    y = torch.empty(steps, batch, hidden, dtype=store)
    init = states(cell, batch)
    got = [s.clone().contiguous() for s in init]
    HalfLayerRunner(kernel, fn, weights, dtype).run(x, y, 0, got)
    rounded = {k: v.to(store).float() for k, v in weights.items()}
    want = rnn_program([cell], [[rounded]], with_states=True).run(x.float().transpose(0, 1),
                                                                   *[s.unsqueeze(0) for s in init])
    assert_close(y.float(), want[0].transpose(0, 1).to(store).float(), dtype, "c", f"{name} {dtype} y")
    for g, w in zip(got, want[1:], strict=True):
        assert_close(g, w[0], dtype, "c", f"{name} {dtype} state")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name,hidden,knobs", GPU_KNOBS)
def test_half_storage_matches_rounded_fp32(name: str, hidden: int, knobs: dict, dtype: str) -> None:
    _run(name, hidden, knobs, dtype)


def test_half_storage_rounds_like_cuda() -> None:
    """The C helpers round fp32 -> fp16/bf16 to nearest even, as __float2half/__float2bfloat16
    (and torch's .half()/.bfloat16()) do, including halfway cases and subnormal fp16."""
    import ctypes

    src = CHalfDialect.preamble(CHalfDialect.__new__(CHalfDialect)) + (
        "void conv(const float* x, unsigned short* h, unsigned short* b, float* hb, float* bb, long n) {\n"
        "  for (long i = 0; i < n; ++i) { h[i] = rn_f2h(x[i]); b[i] = rn_f2b(x[i]);\n"
        "    hb[i] = rn_h2f(h[i]); bb[i] = rn_b2f(b[i]); } }\n")
    lib = load_library(build_c(src))
    x = torch.cat([torch.randn(4000) * 10, torch.tensor([1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8,
                                                         1 + 3 * 2 ** -8, 3e-6, -5e-7, 65504.0, 0.0, -0.0])])
    h = torch.empty(x.numel(), dtype=torch.int16)
    b = torch.empty(x.numel(), dtype=torch.int16)
    hb, bb = torch.empty_like(x), torch.empty_like(x)
    ptr = ctypes.c_void_p
    lib.conv(ptr(x.data_ptr()), ptr(h.data_ptr()), ptr(b.data_ptr()), ptr(hb.data_ptr()), ptr(bb.data_ptr()),
             ctypes.c_long(x.numel()))
    assert torch.equal(h, x.half().view(torch.int16))
    assert torch.equal(b, x.bfloat16().view(torch.int16))
    assert torch.equal(hb, x.half().float()) and torch.equal(bb, x.bfloat16().float())
