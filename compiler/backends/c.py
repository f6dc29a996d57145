"""``rnnc.backends.c``: the C dialect of the C-style backend (registers it on import)."""

from rnnc.backends.cstyle import C_BACKEND, compile_program

__all__ = ["C_BACKEND", "compile_program"]
