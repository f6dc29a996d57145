"""Outside oracles for the linear-recurrence cells, written from the papers in numpy float64.

minGRU, minLSTM, LRU, Mamba's S6 and mLSTM have no torch counterpart to hold them against, and
their parallel forms in ``kernels/*/scan.py`` reuse the references' own helpers.  The oracles below
share no code with ``rnnc.kernels.*.reference`` / ``scan`` (they only read a module's parameters),
compute in float64 numpy, and use a different algorithm from the references' step loops: the
closed (unrolled) form of the linear recurrence

    h_t = (Π_{j≤t} a_j) h_0 + Σ_{k≤t} (Π_{k<j≤t} a_j) b_k

with the products taken as exponentials of cumulative log sums (minGRU, minLSTM, Mamba), as
complex powers λ^(t-k) with the readout as a causal convolution (LRU), or the attention-like
parallel form with a [T, T] gate matrix (mLSTM).  Each is compared with both the nn.Module
(outputs and final states) and the IR interpreter, in float32 over a sweep of shapes and in
float64 on one shape (where agreement to ~1e-10 pins the equations, not just the rough shape).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from kernel_cases import INPUT_SIZE, make_module, random_states, run_ir

from rnnc.tolerances import assert_close

Params = dict[str, np.ndarray]
States = tuple[np.ndarray, ...]

HIDDEN = 12


# ----------------------------------------------------------------------------------------------
# numpy helpers (float64 throughout)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log σ(x) = -softplus(-x), without overflow."""
    return -np.logaddexp(0.0, -x)


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x @ w.T
    return y if b is None else y + b


def _causal_log_weights(cum: np.ndarray) -> np.ndarray:
    """exp(L_t - L_k) for k ≤ t, 0 above the diagonal: ``cum [B, T, ...] -> [B, T(t), T(k), ...]``.

    ``cum`` is the cumulative log-coefficient L_t = Σ_{j≤t} log a_j, so the weight is the product
    Π_{k<j≤t} a_j of the closed form, taken in log space (no division by tiny products)."""
    steps = cum.shape[1]
    diff = cum[:, :, None] - cum[:, None, :]
    mask = np.tril(np.ones((steps, steps), dtype=bool)).reshape(1, steps, steps, *([1] * (cum.ndim - 2)))
    with np.errstate(over="ignore"):
        return np.where(mask, np.exp(np.where(mask, diff, -np.inf)), 0.0)


def _closed_form(log_a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """All h_t of h_t = a_t h_{t-1} + b_t (elementwise a) as the unrolled sum, ``[B, T, ...]``."""
    cum = np.cumsum(log_a, axis=1)
    w = _causal_log_weights(cum)
    return np.exp(cum) * h0[:, None] + np.einsum("btk...,bk...->bt...", w, b)


# ----------------------------------------------------------------------------------------------
# the oracles


def mingru_oracle(x: np.ndarray, p: Params, state: States | None, **_: Any) -> tuple[np.ndarray, States]:
    """minGRU, Feng et al. 2024, "Were RNNs All We Needed?", §3.1 (final form, §3.1.2):

        z_t = σ(Linear_dh(x_t)),  h̃_t = Linear_dh(x_t),  h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

    Algorithm: the paper's log-space coefficients (its appendix implementation:
    log(1 - z) = -softplus(k), log z = -softplus(-k)) and the closed form of the scan,
    h_t = exp(Σ_{j≤t} log(1 - z_j)) h_0 + Σ_{k≤t} exp(Σ_{k<j≤t} log(1 - z_j)) z_k h̃_k.
    h̃ may be negative (no g(·) here), so the b-sum is done in the linear domain.

    Convention (the module's, documented in reference.py): the two linears are one fused
    ``weight [2H, I]`` / ``bias [2H]`` with rows (z, h̃); zero h_0 when no state is given; y_t = h_t.
    """
    proj = _linear(x, p["weight"], p.get("bias"))
    hid = proj.shape[-1] // 2
    k, cand = proj[..., :hid], proj[..., hid:]
    log_one_minus_z = -np.logaddexp(0.0, k)
    z = np.exp(-np.logaddexp(0.0, -k))
    h0 = np.zeros((x.shape[0], hid)) if state is None else state[0]
    hs = _closed_form(log_one_minus_z, z * cand, h0)
    return hs, (hs[:, -1],)


def minlstm_oracle(x: np.ndarray, p: Params, state: States | None, **_: Any) -> tuple[np.ndarray, States]:
    """minLSTM, Feng et al. 2024, "Were RNNs All We Needed?", §3.2 (with §3.2.3's time-independent
    normalisation):

        f_t = σ(Linear_dh(x_t)),  i_t = σ(Linear_dh(x_t)),  h̃_t = Linear_dh(x_t)
        f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t),  h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

    Algorithm: log f' and log i' as in the paper's appendix log-space code
    (d = softplus(-f̃) - softplus(-ĩ), log f' = -softplus(d), log i' = -softplus(-d)), then the
    closed form h_t = exp(Σ_{j≤t} log f'_j) h_0 + Σ_{k≤t} exp(Σ_{k<j≤t} log f'_j) i'_k h̃_k.

    Convention (reference.py): one fused ``weight [3H, I]`` / ``bias [3H]`` with rows (f, i, h̃);
    zero h_0 when no state is given; y_t = h_t.
    """
    proj = _linear(x, p["weight"], p.get("bias"))
    hid = proj.shape[-1] // 3
    f_pre, i_pre, cand = proj[..., :hid], proj[..., hid:2 * hid], proj[..., 2 * hid:]
    d = np.logaddexp(0.0, -f_pre) - np.logaddexp(0.0, -i_pre)  # log i - log f
    log_f_norm = -np.logaddexp(0.0, d)
    i_norm = np.exp(-np.logaddexp(0.0, -d))
    h0 = np.zeros((x.shape[0], hid)) if state is None else state[0]
    hs = _closed_form(log_f_norm, i_norm * cand, h0)
    return hs, (hs[:, -1],)


def lru_oracle(x: np.ndarray, p: Params, state: States | None, **_: Any) -> tuple[np.ndarray, States]:
    """LRU, Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences":
    the diagonal complex recurrence (§3.2) with the stable exponential parameterisation (§3.3)
    and the γ normalisation (§3.4), as in the paper's Appendix A pseudocode::

        λ = exp(-exp(ν_log) + i exp(θ_log)),  γ = exp(γ_log)
        h_k = λ ⊙ h_{k-1} + γ ⊙ (B u_k),      y_k = Re(C h_k) + D ⊙ u_k

    Algorithm: the unrolled form of §3.2, h_k = λ^k h_0 + Σ_{j=0}^{k-1} λ^j γ ⊙ B u_{k-j}, with
    λ^j = exp(j log λ) taken directly from the parameters (no repeated multiplication), and the
    output as a causal convolution with the kernel K_j = C diag(λ^j γ) B (so y never materialises
    h_t); the final state is the same sum at k = T.

    Convention (reference.py, the paper's code): y = Re(C h) + D x with complex B = B_re + i B_im,
    C = C_re + i C_im; the complex state travels as (h_re, h_im); zero h_0 when not given.
    """
    log_lam = -np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"])  # [N]
    gb = np.exp(p["gamma_log"])[:, None] * (p["B_re"] + 1j * p["B_im"])  # [N, I]
    c_mat = p["C_re"] + 1j * p["C_im"]  # [I_out, N]
    batch, steps, _ = x.shape
    n = log_lam.shape[0]
    powers = np.exp(np.arange(steps + 1)[:, None] * log_lam[None, :])  # λ^j, j = 0..T  [T+1, N]
    kernel = np.einsum("on,jn,ni->joi", c_mat, powers[:steps], gb)  # K_j [T, I_out, I]
    lag = np.arange(steps)[:, None] - np.arange(steps)[None, :]  # t - k
    conv = np.where((lag >= 0)[:, :, None, None], kernel[np.clip(lag, 0, None)], 0.0)  # [t, k, o, i]
    y = np.einsum("tkoi,bki->bto", conv, x).real + p["D"] * x
    h0 = np.zeros((batch, n), complex) if state is None else state[0] + 1j * state[1]
    y = y + np.einsum("on,tn,bn->bto", c_mat, powers[1:], h0).real  # Re(C λ^t h_0)
    h_fin = powers[steps] * h0 + np.einsum("kn,ni,bki->bn", powers[steps - 1 - np.arange(steps)], gb, x)
    return y, (h_fin.real, h_fin.imag)


def mamba_oracle(x: np.ndarray, p: Params, state: States | None, *, dt_rank: int, **_: Any
                 ) -> tuple[np.ndarray, States]:
    """Mamba's S6 selective SSM, Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
    Selective State Spaces": Algorithm 2 (B = s_B(x), C = s_C(x), Δ = softplus(Parameter + s_Δ(x)))
    with the recurrence of eq. (2a)/(2b) and the zero-order hold Ā = exp(ΔA) of eq. (4)::

        h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t,   y_t = C_t · h_t + D x_t     (per channel d)

    Algorithm: the unrolled (matrix / "attention-like") form of the selective scan: with
    S_t = Σ_{j≤t} Δ_j per channel, Π_{k<j≤t} Ā_j = exp(A (S_t - S_k)), so
    y_t = Σ_{k≤t} [Σ_n C_t[n] exp(A[n] (S_t - S_k)) B_k[n]] Δ_k x_k + Σ_n C_t[n] exp(A[n] S_t) h_0[n] + D x_t.

    Conventions (reference.py, and mamba_ssm's selective_scan_ref): B̄ = Δ B (the Euler/first-order
    form of eq. (4)'s B̄ = (ΔA)^-1 (exp(ΔA) - I) ΔB); s_Δ is Mamba's low-rank x_proj -> dt_proj
    (``weight_x`` rows (δ [R], B [N], C [N]), ``weight_dt [D, R]``, ``bias_dt``); A = -exp(A_log)
    with ``A_log [D, N]``; the D skip term is included; zero h_0 when no state is given.
    """
    d, n = p["A_log"].shape
    proj = x @ p["weight_x"].T
    dt_low, b_t, c_t = proj[..., :dt_rank], proj[..., dt_rank:dt_rank + n], proj[..., dt_rank + n:]
    delta = np.logaddexp(0.0, _linear(dt_low, p["weight_dt"], p.get("bias_dt")))  # softplus, [B, T, D]
    a = -np.exp(p["A_log"])  # [D, N]
    s = np.cumsum(delta, axis=1)  # [B, T, D]
    steps = x.shape[1]
    lag_s = s[:, :, None, :] - s[:, None, :, :]  # S_t - S_k  [B, t, k, D]
    causal = np.tril(np.ones((steps, steps), dtype=bool))[None, :, :, None, None]
    decay = np.where(causal, np.exp(np.where(causal, lag_s[..., None] * a, -np.inf)), 0.0)  # [B,t,k,D,N]
    mix = np.einsum("btn,btkdn,bkn->btkd", c_t, decay, b_t)  # the selective-SSM matrix M[t, k] per channel
    y = np.einsum("btkd,bkd->btd", mix, delta * x) + p["D"] * x
    h0 = np.zeros((x.shape[0], d, n)) if state is None else state[0]
    y = y + np.einsum("btn,btdn,bdn->btd", c_t, np.exp(s[..., None] * a), h0)
    h_fin = np.exp(s[:, -1, :, None] * a) * h0 + np.einsum("bkdn,bkn,bkd->bdn", decay[:, -1], b_t, delta * x)
    return y, (h_fin,)


def mlstm_oracle(x: np.ndarray, p: Params, state: States | None, *, num_heads: int,
                 forget_gate: str, **_: Any) -> tuple[np.ndarray, States]:
    """mLSTM, Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory": the cell of §2.3
    (C_t = f_t C_{t-1} + i_t v_t k_tᵀ, n_t = f_t n_{t-1} + i_t k_t, h̃_t = C_t q_t / max{|n_tᵀ q_t|, 1},
    h_t = o_t ⊙ h̃_t, k_t = W_k x_t / √d, i_t = exp(ĩ_t), f_t = σ(f̃_t) or exp(f̃_t), o_t = σ(õ_t))
    computed in its *parallel* form (Appendix, "parallel formulation of the mLSTM", eqs. (72)-(75)
    and the equations after them)::

        log F_ts = Σ_{s<j≤t} log f_j (s ≤ t, -inf above),   D̃ = log F + Ĩ          (eqs. 72-74)
        m_t = max_s D̃_ts,  D' = exp(D̃ - m)                                        (eq. 75)
        C̃' = (Q Kᵀ / √d) ⊙ D',  b_t = Σ_s C̃'_ts,  H̃ = C̃' V / max(|b_t|, exp(-m_t))

    per head, against the references' recurrent loop with the stabiliser
    m_t = max(log f_t + m_{t-1}, ĩ_t) (the sLSTM stabilisation of eqs. (15)-(17)).

    Extension for a given state (not in the paper's parallel form, which starts from zeros): the
    initial (C_0, n_0, m_0) enters as a pseudo-column s = 0 with log-weight D̃_t0 = F_t + m_0, so
    m_t = max(F_t + m_0, max_s D̃_ts) is exactly the recurrent stabiliser unrolled (m_0 = 0 for a zero
    state), and the final stabilised state is C_T = Σ_s D'_Ts v_s k_sᵀ + D'_T0 C_0 (n_T likewise).

    Conventions (reference.py / module.py): q, k, v, o projections without biases for q, k, v;
    heads are contiguous DH-slices of H, gates ĩ, f̃ one scalar per head, o per unit; states are
    the stabilised (C [NH, DH, DH] with C[i, j] += v_i k_j, n [NH, DH], m [NH]).
    """
    batch, steps, _ = x.shape
    hid = p["weight_q"].shape[0]
    nh, dh = num_heads, hid // num_heads
    q = (x @ p["weight_q"].T).reshape(batch, steps, nh, dh)
    k = (x @ p["weight_k"].T).reshape(batch, steps, nh, dh)
    v = (x @ p["weight_v"].T).reshape(batch, steps, nh, dh)
    i_pre = _linear(x, p["weight_i"], p.get("bias_i"))  # [B, T, NH]
    f_pre = _linear(x, p["weight_f"], p.get("bias_f"))
    log_f = _log_sigmoid(f_pre) if forget_gate == "sigmoid" else f_pre
    o = np.exp(_log_sigmoid(_linear(x, p["weight_o"], p.get("bias_o"))))  # [B, T, H]
    if state is None:
        c0, n0, m0 = np.zeros((batch, nh, dh, dh)), np.zeros((batch, nh, dh)), np.zeros((batch, nh))
    else:
        c0, n0, m0 = state
    cum = np.cumsum(log_f, axis=1)  # F_t  [B, T, NH]
    causal = np.tril(np.ones((steps, steps), dtype=bool))[None, :, :, None]
    d_tilde = np.where(causal, cum[:, :, None] - cum[:, None, :] + i_pre[:, None, :, :], -np.inf)  # [B,t,s,NH]
    d_init = cum + m0[:, None]  # pseudo-column s = 0  [B, T, NH]
    m = np.maximum(d_tilde.max(axis=2), d_init)
    d_prime = np.exp(d_tilde - m[:, :, None])
    w0 = np.exp(d_init - m)
    c_tilde = np.einsum("bthd,bshd->btsh", q, k) / np.sqrt(dh) * d_prime  # (Q Kᵀ/√d) ⊙ D'
    norm = c_tilde.sum(axis=2) + w0 * np.einsum("bhd,bthd->bth", n0, q)
    num = np.einsum("btsh,bshd->bthd", c_tilde, v) + w0[..., None] * np.einsum("bhij,bthj->bthi", c0, q)
    h_tilde = num / np.maximum(np.abs(norm), np.exp(-m))[..., None]
    y = o * h_tilde.reshape(batch, steps, hid)
    wl, w0l, ks = d_prime[:, -1], w0[:, -1], k / np.sqrt(dh)
    c_fin = np.einsum("bsh,bshi,bshj->bhij", wl, v, ks) + w0l[..., None, None] * c0
    n_fin = np.einsum("bsh,bshd->bhd", wl, ks) + w0l[..., None] * n0
    return y, (c_fin, n_fin, m[:, -1])


ORACLES: dict[str, Callable[..., tuple[np.ndarray, States]]] = {
    "mingru": mingru_oracle, "minlstm": minlstm_oracle, "lru": lru_oracle, "mamba": mamba_oracle,
    "mlstm": mlstm_oracle,
}

# ----------------------------------------------------------------------------------------------
# random weights: (mean, std) per parameter, broad enough to exercise every term (the modules'
# own inits are partly deterministic: Mamba's A_log = log(1..N) in every channel, D = 1, ...)

WEIGHTS: dict[str, dict[str, tuple[float, float]]] = {
    "mingru": {"weight": (0.0, 0.5), "bias": (0.0, 0.5)},
    "minlstm": {"weight": (0.0, 0.5), "bias": (0.0, 0.5)},
    "lru": {"nu_log": (-1.5, 1.0), "theta_log": (0.0, 1.0), "gamma_log": (-0.3, 0.3), "B_re": (0.0, 0.4),
            "B_im": (0.0, 0.4), "C_re": (0.0, 0.3), "C_im": (0.0, 0.3), "D": (0.0, 1.0)},
    "mamba": {"weight_x": (0.0, 0.4), "weight_dt": (0.0, 0.5), "bias_dt": (-1.0, 0.5), "A_log": (0.0, 0.5),
              "D": (0.0, 1.0)},
    "mlstm": {"weight_q": (0.0, 0.4), "weight_k": (0.0, 0.4), "weight_v": (0.0, 0.4), "weight_o": (0.0, 0.4),
              "weight_i": (0.0, 0.3), "bias_i": (0.0, 1.0), "weight_f": (0.0, 0.3), "bias_f": (1.5, 1.0),
              "bias_o": (0.0, 0.5)},
}

#: variant id -> (cell, module overrides)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mingru": ("mingru", {}),
    "minlstm": ("minlstm", {}),
    "lru": ("lru", {}),
    "mamba": ("mamba", {}),
    "mlstm": ("mlstm", {}),
    "mlstm-exp": ("mlstm", {"forget_gate": "exp"}),
    "mingru-nobias": ("mingru", {"bias": False}),
    "minlstm-nobias": ("minlstm", {"bias": False}),
    "mlstm-nobias": ("mlstm", {"bias": False}),
}


def _module(variant: str, dtype: torch.dtype) -> torch.nn.Module:
    name, overrides = VARIANTS[variant]
    module = make_module(name, HIDDEN, **overrides)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for pname, param in module.named_parameters():
            mean, std = WEIGHTS[name][pname]
            if variant == "mlstm-exp" and pname == "bias_f":
                mean, std = -0.3, 0.5  # log f = f̃ directly: keep it around 0, both signs
            param.copy_(torch.randn(param.shape, generator=g) * std + mean)
    return module.to(dtype)


def _oracle(module: torch.nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None
            ) -> tuple[np.ndarray, States]:
    """The oracle on the module's exact parameters, inputs and states, widened to float64."""
    cell, weights = module.rnnc_layer()
    params = {k: w.double().numpy() for k, w in weights.items()}
    np_state = None if state is None else tuple(s.double().numpy() for s in state)
    return ORACLES[cell.kind](x.double().numpy(), params, np_state, **module.hparams())


def _check(variant: str, batch: int, steps: int, given: bool, dtype: torch.dtype) -> dict[str, float]:
    """Oracle vs module and vs IR interpreter; returns the max abs errors (for the record)."""
    dname = str(dtype).removeprefix("torch.")
    module = _module(variant, dtype)
    x = torch.randn(batch, steps, INPUT_SIZE, generator=torch.Generator().manual_seed(11)).to(dtype)
    state = random_states(module, batch, seed=13) if given else None
    want_y, want_states = _oracle(module, x, state)
    with torch.no_grad():
        mod_y, mod_states = module(x, state)
    ir_y, ir_states = run_ir(module, x, state)
    errs = {}
    for who, y, states in (("module", mod_y, mod_states), ("interp", ir_y, ir_states)):
        assert y.dtype == dtype and len(states) == len(want_states)
        assert_close(y, want_y, dname, "reference", f"{variant} {who} y vs paper oracle")
        errs[f"{who} y"] = float(np.abs(y.double().numpy() - want_y).max())
        for i, (got, want) in enumerate(zip(states, want_states, strict=True)):
            assert_close(got, want, dname, "reference", f"{variant} {who} state {i} vs paper oracle")
            errs[f"{who} s{i}"] = float(np.abs(got.double().numpy() - want).max())
    return errs


def _float32_cases() -> list:
    cases = []
    for variant, batch, steps, given in itertools.product(
            ("mingru", "minlstm", "lru", "mamba", "mlstm", "mlstm-exp"), (1, 3), (1, 37, 64), (False, True)):
        case_id = f"{variant}-B{batch}-T{steps}-{'s0' if given else 'z'}"
        cases.append(pytest.param(variant, batch, steps, given, id=case_id))
    for variant in ("mingru-nobias", "minlstm-nobias", "mlstm-nobias"):
        cases.append(pytest.param(variant, 3, 37, True, id=f"{variant}-B3-T37-s0"))
    return cases


@pytest.mark.parametrize(("variant", "batch", "steps", "given"), _float32_cases())
def test_float32_matches_paper_oracle(variant: str, batch: int, steps: int, given: bool) -> None:
    _check(variant, batch, steps, given, torch.float32)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float64_matches_paper_oracle(variant: str) -> None:
    """In float64 the module and the interpreter agree with the oracle to ~1e-10: the equations,
    not just float32 noise, are what is compared."""
    _check(variant, 3, 37, True, torch.float64)
