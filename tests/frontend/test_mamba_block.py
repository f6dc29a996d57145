"""The drop-in Mamba block (``rnnc.kernels.mamba.block.MambaBlock``): against an outside oracle
written from the paper's block diagram (explicit causal convolution taps, the S6 recurrence
stepped in float64 numpy), and traced once with batch and length symbolic, then run through the
interpreter, onnxruntime and ``rnnc.compile`` at other sizes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import rnnc
from rnnc.kernels.mamba.block import MambaBlock
from rnnc.tolerances import assert_close


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _oracle(block: MambaBlock, u: np.ndarray) -> np.ndarray:
    """Gu & Dao 2023, Fig. 3 and Alg. 2, in float64: x, z = in_proj(u); x = SiLU(causal
    depthwise conv of x); Δ = softplus(W_Δ (W_x x)_Δ + b), B, C from W_x x; A = -exp(A_log);
    h = exp(Δ A) h + Δ B x; y = C·h + D x; out = out_proj(y · SiLU(z))."""
    p = {k: v.detach().double().numpy() for k, v in block.state_dict().items()}
    xz = u @ p["in_proj.weight"].T
    inner = xz.shape[-1] // 2
    x, z = xz[..., :inner], xz[..., inner:]
    w, kc = p["conv1d.weight"][:, 0, :], p["conv1d.weight"].shape[-1]  # [E, K]
    conv = np.zeros_like(x)
    for tap in range(kc):  # out_t = Σ_j w[:, j] x_{t - (K - 1) + j}, zero before the start
        shift = kc - 1 - tap
        conv[:, shift:] += w[:, tap] * x[:, : x.shape[1] - shift]
    x = _silu(conv + p["conv1d.bias"])
    s = {k.removeprefix("ssm."): v for k, v in p.items() if k.startswith("ssm.")}
    rank, n = s["weight_dt"].shape[1], s["A_log"].shape[1]
    proj = x @ s["weight_x"].T
    dt = np.logaddexp(0.0, proj[..., :rank] @ s["weight_dt"].T + s["bias_dt"])
    bmat, cmat = proj[..., rank:rank + n], proj[..., rank + n:]
    a = -np.exp(s["A_log"])
    h = np.zeros((u.shape[0], inner, n))
    ys = []
    for t in range(u.shape[1]):
        h = np.exp(dt[:, t, :, None] * a) * h + (dt[:, t] * x[:, t])[..., None] * bmat[:, t, None, :]
        ys.append((h * cmat[:, t, None, :]).sum(-1) + s["D"] * x[:, t])
    y = np.stack(ys, 1) * _silu(z)
    return y @ p["out_proj.weight"].T


def test_block_matches_the_paper_and_compiles_at_other_sizes() -> None:
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=4, d_conv=4).eval()
    u = torch.randn(3, 23, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = block(u)
    assert_close(eager.double(), _oracle(block, u.double().numpy()), "float32", "reference", "block vs paper")

    program = rnnc.trace(block, (torch.randn(2, 10, 8),))
    assert [n.attr("cells")[0].kind for n in program.rnn_nodes()] == ["mamba"]
    assert_close(program.run(u), eager, "float32", "trace-check", "interpreter at B=3, T=23")
    proto = rnnc.export_onnx(program)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: u.numpy() if k == 0 else np.zeros([3 if isinstance(d, str) else d for d in i.shape], np.float32)
             for k, i in enumerate(sess.get_inputs())}  # the export exposes the scan state (zeros: start)
    got = sess.run(None, feeds)[0]
    assert_close(torch.from_numpy(got), eager, "float32", "onnxruntime", "onnx at B=3, T=23")
    compiled = rnnc.compile(block, (torch.randn(2, 10, 8),), target="cpu/host")
    out = compiled(u)
    assert_close(out[0] if isinstance(out, tuple) else out, eager, "float32", "c", "compiled at B=3, T=23")
