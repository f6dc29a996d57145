"""SmoothQuant's division folded into the layer that feeds a recurrent cell (``fold.plan_cell_folds``),
and state-fed inputs smoothed only where they have an outlier channel: with both, an outlier-laden
LSTM is smoothed *and* still one fused ``DynamicQuantizeLSTM``."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from quant_helpers import op_types

import rnnc
from rnnc.tolerances import assert_close


class Tagger(torch.nn.Module):
    """in_proj -> relu -> LSTM -> head; ``outlier`` scales in_proj's channel 3 and divides the LSTM's
    input column 3 by it, so the float function is unchanged but naive int8 of x breaks."""

    def __init__(self, outlier: float, bidirectional: bool = False, hot_state: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.in_proj = torch.nn.Linear(8, 32)
        self.rnn = torch.nn.LSTM(32, 32, batch_first=True, bidirectional=bidirectional)
        self.head = torch.nn.Linear(64 if bidirectional else 32, 4)
        with torch.no_grad():
            self.in_proj.weight[3] *= outlier
            self.in_proj.bias[3] *= outlier
            self.rnn.weight_ih_l0[:, 3] /= outlier
            if bidirectional:
                self.rnn.weight_ih_l0_reverse[:, 3] /= outlier
            if hot_state:  # unit 0 of h swings to ~±1, the others stay near 0: an outlier channel of h
                for w in (self.rnn.weight_ih_l0, self.rnn.weight_hh_l0, self.rnn.bias_ih_l0):
                    w.mul_(0.02)
                    w[0::32].mul_(200.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(torch.relu(self.in_proj(x)))[0])


def _data(seed: int, batch: int = 16) -> torch.Tensor:
    return torch.randn(batch, 12, 8, generator=torch.Generator().manual_seed(seed))


def _run(proto, x: torch.Tensor) -> torch.Tensor:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {m.name: x.numpy() if i == 0 else np.zeros([x.shape[0] if isinstance(d, str) else d for d in m.shape],
                                                       np.float32) for i, m in enumerate(sess.get_inputs())}
    return torch.from_numpy(sess.run(None, feeds)[0])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_smoothed_lstm_input_folds_into_its_producer_and_fuses(bidirectional):
    model = Tagger(300.0, bidirectional).eval()
    program = rnnc.trace(model, (_data(0, 2),))
    x = _data(1)
    with torch.no_grad():
        ref = model(x)
    smooth = rnnc.quantize(program, [_data(2)], "w8a8", "smooth", progress=False)
    plain = rnnc.quantize(program, [_data(2)], "w8a8", "none", progress=False, stats=smooth.stats)
    sites = {r.weight: r for r in smooth.report.sites}
    ih = [r for w, r in sites.items() if "weight_ih" in w]
    assert ih and all(r.smoothed and "smoothing folded into" in r.note for r in ih)
    assert not any(r.smoothed for w, r in sites.items() if "weight_hh" in w)  # h has no outlier channel
    proto = smooth.export_onnx()
    ops = op_types(proto.graph)
    assert "DynamicQuantizeLSTM" in ops and "Scan" not in ops
    # in_proj is dynamic int8 too: a 1-ulp difference in its output may move one code of x
    assert_close(_run(proto, x), smooth.run(x), "int8chain", "onnxruntime")
    # the fold is what smoothing is for: the outlier channel no longer crushes x's int8 range
    err = {k: float((q.run(x) - ref).norm() / ref.norm()) for k, q in (("smooth", smooth), ("none", plain))}
    assert err["smooth"] < 0.02 and err["none"] > 10 * err["smooth"], err


def test_a_state_with_an_outlier_channel_is_still_smoothed():
    model = Tagger(1.0, hot_state=True).eval()
    program = rnnc.trace(model, (_data(0, 2),))
    q = rnnc.quantize(program, [_data(2)], "w8a8", "smooth", progress=False, threshold=4.0)
    hh = next(r for r in q.report.sites if "weight_hh" in r.weight)
    assert hh.max_ratio > 4.0 and hh.smoothed  # its run-time mul stays: no fused kernel for this one
    assert "DynamicQuantizeLSTM" not in op_types(q.export_onnx().graph)


def test_fold_off_keeps_the_run_time_mul():
    program = rnnc.trace(Tagger(300.0).eval(), (_data(0, 2),))
    q = rnnc.quantize(program, [_data(2)], "w8a8", "smooth", progress=False, fold=False)
    ih = next(r for r in q.report.sites if "weight_ih" in r.weight)
    assert ih.smoothed and "folded" not in ih.note
    assert "DynamicQuantizeLSTM" not in op_types(q.export_onnx().graph)
