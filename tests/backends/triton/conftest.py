"""Triton kernels in this folder run in the interpreter when there is no GPU: TRITON_INTERPRET must be
set before triton is first imported, so it is set here, for this folder only.  AOT compilation
(``rnnc.backends.triton.aot``) runs in a subprocess without it, so both work in one session."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
