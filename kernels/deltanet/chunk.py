"""DeltaNet's chunkwise (WY/UT) form: the reference's projections and readout around ``rnnc.ir.chunkform``."""

from rnnc.kernels.deltanet.reference import project, readout
from rnnc.kernels.linattn import make_chunked

chunked = make_chunked("delta", project, readout)
