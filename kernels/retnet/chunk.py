"""RetNet's chunkwise retention: the reference's projections and readout around ``rnnc.ir.chunkform``."""

from rnnc.kernels.linattn import make_chunked
from rnnc.kernels.retnet.reference import project, readout

chunked = make_chunked("gla", project, readout)
