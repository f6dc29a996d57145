"""Mamba-2's chunkwise form (the SSD algorithm): the reference's projections and readout around
``rnnc.ir.chunkform``."""

from rnnc.kernels.linattn import make_chunked
from rnnc.kernels.mamba2.reference import project, readout

chunked = make_chunked("gla", project, readout)
