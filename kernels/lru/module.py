"""``LRULayer``: the Linear Recurrent Unit as a layer users can train and rnnc can compile."""

from __future__ import annotations

import math

import torch

from rnnc.errors import UserInputError
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.lru.cell import build_cell
from rnnc.kernels.lru.reference import reference


class LRULayer(RnncLayer):
    """LRU over ``x[B, T, I]`` with N = ``hidden_size`` complex states; y is ``[B, T, I]``.

    Initialisation as in the paper: eigenvalues uniform on the ring r_min ≤ |λ| ≤ r_max with
    phase in [0, max_phase]; γ = √(1 - |λ|²) so every state starts with unit variance;
    B ~ N(0, 1/(2I)) (real and imaginary part), C ~ N(0, 1/N) (likewise), D ~ N(0, 1).
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, r_min: float = 0.0, r_max: float = 1.0,
                 max_phase: float = 2 * math.pi) -> None:
        super().__init__(input_size, hidden_size)
        if not 0.0 <= r_min < r_max <= 1.0 or max_phase <= 0:
            raise UserInputError(f"LRU ring init needs 0 <= r_min < r_max <= 1 and max_phase > 0, got "
                                 f"r_min={r_min}, r_max={r_max}, max_phase={max_phase}")
        n, d = hidden_size, input_size
        for name, shape in (("nu_log", (n,)), ("theta_log", (n,)), ("gamma_log", (n,)), ("B_re", (n, d)),
                            ("B_im", (n, d)), ("C_re", (d, n)), ("C_im", (d, n)), ("D", (d,))):
            maybe_param(self, name, shape)
        with torch.no_grad():
            u1, u2 = torch.rand(n), torch.rand(n)
            # |λ|² uniform on [r_min², r_max²]; clamp keeps |λ| < 1 so ν_log stays finite
            mod_sq = (u1 * (r_max**2 - r_min**2) + r_min**2).clamp(1e-12, 1 - 1e-7)
            self.nu_log.copy_(torch.log(-0.5 * torch.log(mod_sq)))
            self.theta_log.copy_(torch.log((max_phase * u2).clamp_min(1e-12)))
            self.gamma_log.copy_(0.5 * torch.log1p(-mod_sq))
            self.B_re.normal_(0.0, 1 / math.sqrt(2 * d))
            self.B_im.normal_(0.0, 1 / math.sqrt(2 * d))
            self.C_re.normal_(0.0, 1 / math.sqrt(n))
            self.C_im.normal_(0.0, 1 / math.sqrt(n))
            self.D.normal_(0.0, 1.0)
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, r_min={self.r_min}, r_max={self.r_max}"
