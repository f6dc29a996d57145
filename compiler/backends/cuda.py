"""``rnnc.backends.cuda``: the CUDA dialect of the C-style backend (registers it on import)."""

from rnnc.backends.cstyle import CUDA_BACKEND

__all__ = ["CUDA_BACKEND"]
