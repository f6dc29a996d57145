"""GLA's chunkwise form: the reference's projections and readout around ``rnnc.ir.chunkform``."""

from rnnc.kernels.gla.reference import project, readout
from rnnc.kernels.linattn import make_chunked

chunked = make_chunked("gla", project, readout)
