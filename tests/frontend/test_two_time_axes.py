"""Two inputs whose time axes are independent (encoder/decoder) get two time symbols."""

from __future__ import annotations

import torch

import rnnc
from rnnc.tolerances import assert_close


class EncDec(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.GRU(4, 8, batch_first=True)
        self.dec = torch.nn.GRU(3, 8, batch_first=True)
        self.out = torch.nn.Linear(8, 5)

    def forward(self, src, tgt):
        _, h = self.enc(src)
        y, _ = self.dec(tgt, h)
        return self.out(y)


def test_encoder_and_decoder_lengths_are_independent(tmp_path):
    torch.manual_seed(0)
    model = EncDec().eval()
    program = rnnc.trace(model, (torch.randn(2, 13, 4), torch.randn(2, 12, 3)))
    (_, src_t), (_, tgt_t) = program.graph.inputs
    assert src_t.shape == ("B", "T", 4) and tgt_t.shape == ("B", "T1", 3)
    src, tgt = torch.randn(3, 7, 4), torch.randn(3, 20, 3)
    with torch.no_grad():
        assert_close(program.run(src, tgt), model(src, tgt))
    from rnnc.backends.onnx import StatefulSession

    path = tmp_path / "encdec.onnx"
    rnnc.export_onnx(program, None, str(path))
    out = StatefulSession(path)(src.numpy(), tgt.numpy())  # missing initial states are fed zeros
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert_close(torch.from_numpy(out), model(src, tgt).detach(), backend="onnxruntime")
