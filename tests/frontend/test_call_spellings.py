"""Every way torch lets a call be spelled converts to the same result as torch.

Why: handlers are written for torch's canonical argument order; a handler that swallowed a
keyword it did not know (``x.mean(axis=1)``) once reduced over every dim, silently.  Calls a
handler does not declare now take the exact path (``torch.export`` of the call).  Each case runs
after a GRU-free front end and is checked against torch eager at a batch and length it was not
traced at."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc

SPELLINGS = {
    "mean_axis": lambda x: x - x.mean(axis=1, keepdim=True),
    "sum_axis_neg": lambda x: x * x.sum(axis=-1, keepdim=True),
    "torch_mean_axis": lambda x: x - torch.mean(x, axis=1, keepdim=True),
    "amax_axis": lambda x: x - x.amax(axis=1, keepdim=True),
    "sum_dtype": lambda x: x + x.sum(dim=-1, keepdim=True, dtype=torch.float64).float(),
    "flip_dims": lambda x: torch.flip(x, dims=[1]),
    "transpose_kw": lambda x: torch.transpose(x, dim0=1, dim1=2).transpose(1, 2),
    "permute_kw": lambda x: x.permute(dims=(0, 2, 1)).permute(0, 2, 1),
    "cat_tensors_kw": lambda x: torch.cat(tensors=[x, -x], dim=2)[..., ::2],
    "cat_axis": lambda x: torch.cat([x, 2 * x], axis=-1)[..., 1::2],
    "stack_axis": lambda x: torch.stack([x, x * 3], axis=-1).sum(-1),
    "squeeze_axis": lambda x: x.unsqueeze(1).squeeze(axis=1),
    "where_kw": lambda x: torch.where(condition=x > 0, input=x, other=0.5 * x),
    "hardtanh_kw": lambda x: F.hardtanh(x, min_val=-0.3, max_val=0.4),
    "softplus_threshold": lambda x: F.softplus(x * 4, beta=2, threshold=5),
    "softmax_axis": lambda x: x.softmax(axis=-1),
    "where_scalars": lambda x: torch.where(x > 0, 1.0, 0.0) + x,
    "rsub_alpha": lambda x: torch.rsub(x, 1.0, alpha=2),
    "shape_star_unpack": lambda x: (lambda b, t, *_: x.reshape(b * t, -1).view(b, t, -1))(*x.shape),
    "expand_shape_star": lambda x: x[..., None].expand(*x.shape, 2).sum(-1),
    "new_zeros_size_kw": lambda x: x + x.new_zeros(size=(x.size(0), x.size(1), 8)),
    "zeros_size_kw": lambda x: x + torch.zeros(size=(x.size(0), 1, 8)),
    "arange_kwargs": lambda x: x / torch.arange(start=1, end=x.size(1) + 1, step=1, dtype=x.dtype)[None, :, None],
    "arange_end_kw": lambda x: x * torch.arange(end=x.size(1), dtype=x.dtype)[None, :, None],
    "arange_start_end_kw": lambda x: x / torch.arange(1, end=x.size(1) + 1, dtype=x.dtype)[None, :, None],
    "size_minus_constant": lambda x: x * 0 + (x.size(1) - 3),  # negative at T < 3: a scalar, no ones vector
    "tensor_new_zero_": lambda x: x + x.new(x.size(0), 1, 8).zero_(),  # AWD-LSTM's init_hidden
    "replicate_pad_4d": lambda x: F.pad(x.unsqueeze(1), [1, 0, 0, 0], mode="replicate")[:, 0, :, :-1],
    "reflect_pad_4d": lambda x: F.pad(x.unsqueeze(1), [2, 0, 0, 0], mode="reflect")[:, 0, :, 1:-1],
}


class _Front(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.fn(x))[0]


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_spelling_matches_torch(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = _Front(SPELLINGS[name]).eval()
    g = torch.Generator().manual_seed(1)
    program = rnnc.trace(model, (torch.randn(2, 10, 8, generator=g),))
    assert [str(d) for d in program.graph.inputs[0][1].shape[:2]] == ["B", "T"]
    matches_torch(program, model, (torch.randn(3, 17, 8, generator=g),), tmp_path, name)  # the exact path exports


#: calls whose result dtype is torch's own rule, returned as they are (``matches_torch`` checks
#: the dtype): a count of a mask is int64, a legacy tensor class or its name is a dtype
DTYPES = {
    "count_of_a_mask": lambda x: (x > 0).sum(-1),
    "count_of_int32": lambda x: (x > 0).int().sum(1),
    "count_in_int32": lambda x: (x > 0).sum(1, dtype=torch.int32),
    "last_index_from_a_count": lambda x: x.gather(1, ((x[..., :1] > -9).sum(1, keepdim=True) - 1)
                                                  .expand(-1, 1, x.size(2))),
    "type_legacy_class": lambda x: x.type(torch.DoubleTensor) * 2,
    "type_legacy_name": lambda x: (x > 0).type("torch.LongTensor") * x.type("torch.DoubleTensor"),
}


class _Returns(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_result_dtype_is_torchs(name: str, tmp_path) -> None:
    """Summed as booleans, a count was typed bool (an allennlp CRF's ``mask.sum(0).long() - 1``
    failed to convert, wenet's ``masks.sum(1)`` failed ONNX validation); ``x.type(torch.
    LongTensor)`` failed to trace, and its string spelling was dropped (the input's dtype kept)."""
    model = _Returns(DTYPES[name]).eval()
    g = torch.Generator().manual_seed(1)
    program = rnnc.trace(model, (torch.randn(2, 10, 8, generator=g),))
    assert "B" in program.graph.inputs[0][1].shape
    matches_torch(program, model, (torch.randn(3, 17, 8, generator=g),), tmp_path, name)


class OldStyleVariable(nn.Module):  # DA-RNN and many tutorials: Variable(torch.zeros(b, h))
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.autograd import Variable

        h = Variable(torch.zeros(x.size(0), 8))
        outs = []
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
            outs.append(h)
        return torch.stack(outs, 1)


def test_a_variable_wrapper_traces_and_is_left_as_it_was(tmp_path) -> None:
    from torch.autograd import Variable

    had = "__new__" in Variable.__dict__
    model = OldStyleVariable().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 8),))
    assert [str(d) for d in program.graph.inputs[0][1].shape[:2]] == ["B", "T"]
    matches_torch(program, model, (torch.randn(3, 9, 8),), tmp_path, "variable")
    assert ("__new__" in Variable.__dict__) == had and Variable(torch.ones(2)).sum() == 2
