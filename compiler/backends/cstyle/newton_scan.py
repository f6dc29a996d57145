"""Running the C chunked scan of a Newton step (``rnnc.lower.newton_scan``) from torch tensors.

``rnnc.lower.newton.solve`` takes any ``scan(a, b, full) -> s``; :class:`CScan` is the C one: a
kernel per (method, state width), built once and cached like every C kernel, run over the
machine's threads (each owns a chunk of the sequence).
"""

from __future__ import annotations

import ctypes
from typing import Any

from rnnc.backends.cstyle.runtime import default_threads


class CScan:
    """``scan(a, b, full)`` with time on dim 0: ``a [T, B, D, D]`` (full) or ``[T, B, D]``,
    ``b [T, B, D]`` -> ``s [T, B, D]`` (fp32 in the kernel; returned in ``b``'s dtype)."""

    name = "c"

    def __init__(self, target: Any = None, threads: int = 0) -> None:
        self.target = target
        self.threads = threads or default_threads()
        self._fns: dict[tuple[bool, int], Any] = {}

    def _fn(self, full: bool, dim: int) -> Any:
        key = (full, dim)
        if key not in self._fns:
            from rnnc.backends.cstyle.program import build_kernel
            from rnnc.lower.newton_scan import scan_kernel

            kernel = scan_kernel(f"rnnc_newton_scan_{'full' if full else 'diag'}_{dim}", full, dim)
            self._fns[key] = build_kernel(kernel, self.target).fn
        return self._fns[key]

    def __call__(self, a: Any, b: Any, full: bool) -> Any:
        import torch

        from rnnc.errors import UnsupportedError

        if a.device.type != "cpu" or b.device.type != "cpu":
            raise UnsupportedError(f"the C Newton scan runs on CPU tensors; these are on {b.device} "
                                   "(compile with backend='triton' or None for a GPU)")
        steps, batch, dim = (int(n) for n in b.shape)
        workers = max(1, min(self.threads, steps))
        per = dim * dim if full else dim
        a32, b32 = a.float().contiguous(), b.float().contiguous()
        s = torch.empty_like(b32)
        scratch_p = torch.empty(workers * batch * per, dtype=torch.float32)
        scratch_e = torch.empty(workers * batch * dim, dtype=torch.float32)
        scratch_m = torch.empty(workers * per, dtype=torch.float32)
        bufs = (a32, b32, s, scratch_p, scratch_e, scratch_m)
        sc = (ctypes.c_long * 3)(batch, steps, workers)
        ptrs = (ctypes.c_void_p * len(bufs))(*[t.data_ptr() for t in bufs])
        self._fn(full, dim)(sc, ptrs)
        return s.to(b.dtype)
