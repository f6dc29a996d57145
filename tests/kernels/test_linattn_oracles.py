"""Outside oracles for the matrix-state family (GLA, RetNet, HGRN2, DeltaNet, Gated DeltaNet,
Mamba-2), written from the papers in numpy float64.

They share no code with ``rnnc.kernels.linattn`` / ``rnnc.ir.chunkform`` or the cells' references (they only
read a module's parameters), and use a different algorithm from the references' step loop:

* decayed outer-product cells (GLA, RetNet, HGRN2, Mamba-2): the *parallel* (attention-like)
  form over the whole sequence, o_t = (q_t ⊙ e^{B_t})ᵀ S_0 + Σ_{s≤t} (Σ_d q_td k_sd e^{B_td-B_sd}) v_s
  with B the cumulative log decay from the start of the sequence (no chunks, no recurrence);
* the delta rule: the papers' matrix form, each step an explicit ``[DK, DK]`` transition
  ``A_t = α_t (I - β_t k_t k_tᵀ)`` multiplied into the state (the reference instead applies a
  rank-one correction).

Each oracle is compared with the nn.Module and with the IR interpreter in float32 over a sweep
of shapes and in float64 on one shape (agreement to ~1e-10 pins the equations).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from kernel_cases import INPUT_SIZE, make_module, random_states, run_ir

from rnnc.tolerances import assert_close

P = dict[str, np.ndarray]
HIDDEN, HEADS = 12, 3


def _lin(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    return x @ w.T + (0.0 if b is None else b)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _silu(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _heads(t: np.ndarray, nh: int) -> np.ndarray:
    return t.reshape(*t.shape[:-1], nh, -1)


def _rms(o: np.ndarray, centered: bool = False) -> np.ndarray:
    """RMSNorm / group norm per head, eps 1e-5, no affine: ``[..., NH, D] -> [..., NH*D]``."""
    if centered:
        o = o - o.mean(-1, keepdims=True)
    o = o / np.sqrt((o ** 2).mean(-1, keepdims=True) + 1e-5)
    return o.reshape(*o.shape[:-2], -1)


def _parallel(q: np.ndarray, k: np.ndarray, v: np.ndarray, log_decay: np.ndarray, s0: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Decayed linear attention over the whole sequence at once: q, k ``[B, T, NH, DK]``, v
    ``[B, T, NH, DV]``, log decay ``[B, T, NH, DK]`` (broadcast), S0 ``[B, NH, DK, DV]``."""
    cum = np.cumsum(np.broadcast_to(log_decay, k.shape), axis=1)  # B_t
    steps = q.shape[1]
    mask = np.tril(np.ones((steps, steps), bool))[None, :, :, None, None]
    diff = cum[:, :, None] - cum[:, None, :]  # [B, t, s, NH, DK]
    w = np.where(mask, np.exp(np.where(mask, diff, -np.inf)), 0.0)
    o = np.einsum("btnd,bsnd,btsnd,bsnv->btnv", q, k, w, v) + np.einsum("btnd,bndv->btnv", q * np.exp(cum), s0)
    last = cum[:, -1]  # [B, NH, DK]
    s = np.exp(last)[..., None] * s0 + np.einsum("bsnd,bsnd,bsnv->bndv", k, np.exp(last[:, None] - cum), v)
    return o, s


def gla_oracle(x: np.ndarray, p: P, s0: np.ndarray, nh: int, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """GLA, Yang et al. 2024, §4.1-4.4: S_t = Diag(α_t) S_{t-1} + k_tᵀ v_t, o_t = q_t S_t,
    α_t = σ(x W_α1 W_α2 + b_α)^{1/τ}, τ = 16; q scaled by 1/√d_k; output
    swish(x W_r) ⊙ LN(o) with the norm per head (RMS, no affine: rnnc's convention)."""
    q, k, v = (_heads(_lin(x, p[f"weight_{c}"]), nh) for c in "qkv")
    alpha = _sigmoid(_lin(_lin(x, p["weight_a1"]), p["weight_a2"], p["bias_a"])) ** (1 / 16)
    o, s = _parallel(q / np.sqrt(q.shape[-1]), k, v, np.log(_heads(alpha, nh)), s0)
    return _silu(_lin(x, p["weight_r"])) * _rms(o), s


def retnet_oracle(x: np.ndarray, p: P, s0: np.ndarray, nh: int, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """RetNet, Sun et al. 2023, §2.1-2.2: S_n = γ S_{n-1} + K_nᵀ V_n, o_n = Q_n S_n with γ per
    head; Y = swish(X W_G) ⊙ GroupNorm(o) (one group per head, no affine).  The decays must be
    the paper's γ_h = 1 - 2^(-5-h) at initialisation -- checked here, not assumed."""
    gamma = 1.0 - 2.0 ** (-5.0 - np.arange(nh))
    q, k, v = (_heads(_lin(x, p[f"weight_{c}"]), nh) for c in "qkv")
    decay = np.broadcast_to(p["log_decay"][:, None], q.shape)
    o, s = _parallel(q / np.sqrt(q.shape[-1]), k, v, decay, s0)
    return _silu(_lin(x, p["weight_g"])) * _rms(o, centered=True), s, gamma


def hgrn2_oracle(x: np.ndarray, p: P, s0: np.ndarray, nh: int, lower_bound: float = 0.0, **_: Any
                 ) -> tuple[np.ndarray, np.ndarray]:
    """HGRN2, Qin et al. 2024, §3: f_t = γ + (1-γ) σ(x W_f + b_f) (γ the lower bound),
    h_t = Diag(f_t) h_{t-1} + (1 - f_t)ᵀ i_t with i_t = x W_i, o_t = q_t h_t with q = silu(x W_q);
    RMSNorm per head on the output."""
    f = lower_bound + (1 - lower_bound) * _sigmoid(_heads(_lin(x, p["weight_f"], p["bias_f"]), nh))
    q = _silu(_heads(_lin(x, p["weight_q"]), nh))
    o, s = _parallel(q, 1.0 - f, _heads(_lin(x, p["weight_i"]), nh), np.log(f), s0)
    return _rms(o), s


def mamba2_oracle(x: np.ndarray, p: P, s0: np.ndarray, nh: int, **_: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mamba-2, Dao & Gu 2024, §7 (SSD, one group): h_t = exp(Δ_t A) h_{t-1} + B_t (Δ_t x_t)ᵀ,
    y_t = C_tᵀ h_t + D x_t per head with scalar A = -exp(A_log), Δ = softplus(x W_Δ + b_Δ);
    then RMSNorm(y ⊙ silu(z)) per head (gate before norm, no affine)."""
    xh, z = (_heads(_lin(x, p[f"weight_{c}"]), nh) for c in "xz")
    bmat, cmat = (np.broadcast_to(_lin(x, p[f"weight_{c}"])[..., None, :], (*xh.shape[:-1], s0.shape[-2]))
                  for c in "BC")
    dt = _softplus(_lin(x, p["weight_dt"], p["bias_dt"]))[..., None]
    o, s = _parallel(cmat, bmat, dt * xh, dt * -np.exp(p["A_log"])[:, None], s0)
    return _rms((o + p["D"][:, None] * xh) * _silu(z)), s


def deltanet_oracle(x: np.ndarray, p: P, s0: np.ndarray, nh: int, gated: bool = False, **_: Any
                    ) -> tuple[np.ndarray, np.ndarray]:
    """DeltaNet (Yang et al. 2024, §2.2): S_t = S_{t-1}(I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ in the
    paper's [DV, DK] orientation, here transposed to [DK, DV]: S_t = (I - β k kᵀ) S_{t-1} + β k vᵀ;
    Gated DeltaNet (Yang et al. 2025, eq. 10) multiplies the transition by α_t = exp(-exp(A_log)
    softplus(x W_a + b_a)).  q, k = L2Norm(SiLU(x W)) (eps 1e-6 under the root), v = SiLU(x W_v),
    β = σ(x W_β + b_β); output RMSNorm(o) per head (⊙ SiLU(x W_g) when gated)."""
    q, k, v = (_silu(_heads(_lin(x, p[f"weight_{c}"]), nh)) for c in "qkv")
    q, k = (t / np.sqrt((t ** 2).sum(-1, keepdims=True) + 1e-6) for t in (q, k))
    beta = _sigmoid(_lin(x, p["weight_b"], p["bias_b"]))
    alpha = np.exp(-np.exp(p["A_log"]) * _softplus(_lin(x, p["weight_a"], p["bias_a"]))) if gated \
        else np.ones_like(beta)
    eye = np.eye(k.shape[-1])
    s, outs = s0.copy(), []
    for t in range(x.shape[1]):
        kt, bt, at = k[:, t], beta[:, t][..., None, None], alpha[:, t][..., None, None]
        transition = at * (eye - bt * kt[..., :, None] * kt[..., None, :])  # [B, NH, DK, DK]
        s = transition @ s + bt * kt[..., :, None] * v[:, t][..., None, :]
        outs.append(np.einsum("bnd,bndv->bnv", q[:, t], s))
    o = np.stack(outs, 1)
    y = _rms(o)
    return (y * _silu(_lin(x, p["weight_g"])) if gated else y), s


ORACLES = {"gla": gla_oracle, "retnet": retnet_oracle, "hgrn2": hgrn2_oracle, "deltanet": deltanet_oracle,
           "mamba2": mamba2_oracle}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gla": ("gla", {}), "retnet": ("retnet", {}), "hgrn2": ("hgrn2", {}),
    "hgrn2-lb": ("hgrn2", {"lower_bound": 0.4}), "deltanet": ("deltanet", {}),
    "gated-deltanet": ("deltanet", {"gated": True}), "mamba2": ("mamba2", {}),
}


def _check(variant: str, batch: int, steps: int, given: bool, dtype: torch.dtype) -> None:
    name, overrides = VARIANTS[variant]
    module = make_module(name, HIDDEN, **{"num_heads": HEADS, **overrides}).to(dtype)
    x = torch.randn(batch, steps, INPUT_SIZE, generator=torch.Generator().manual_seed(11)).to(dtype)
    state = random_states(module, batch, seed=13) if given else None
    cell, weights = module.rnnc_layer()
    s0 = state[0].double().numpy() if given else np.zeros((batch, *cell.states[0].shape))
    params = {k: w.double().numpy() for k, w in weights.items()}
    got = ORACLES[name](x.double().numpy(), params, s0, HEADS, **overrides)
    if name == "retnet":  # the oracle also returns the paper's decays, which the init must equal
        np.testing.assert_allclose(np.exp(params["log_decay"]), got[2], rtol=1e-6)
    want_y, want_s = got[0], got[1]
    dname = str(dtype).removeprefix("torch.")
    with torch.no_grad():
        mod_y, (mod_s,) = module(x, state)
    ir_y, (ir_s,) = run_ir(module, x, state)
    for who, y, s in (("module", mod_y, mod_s), ("interp", ir_y, ir_s)):
        assert y.dtype == dtype
        assert_close(y, want_y, dname, "reference", f"{variant} {who} y vs paper oracle")
        assert_close(s, want_s, dname, "reference", f"{variant} {who} S vs paper oracle")


@pytest.mark.parametrize(("variant", "batch", "steps", "given"), list(itertools.product(
    VARIANTS, (1, 3), (1, 37), (False, True))))
def test_float32_matches_paper_oracle(variant: str, batch: int, steps: int, given: bool) -> None:
    _check(variant, batch, steps, given, torch.float32)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float64_matches_paper_oracle(variant: str) -> None:
    _check(variant, 3, 37, True, torch.float64)
