"""The C backend's chunkwise form of the matrix-state family (``rnnc.lower.chunk``): against the
module's step loop at lengths that are not a chunk multiple, T = 1, a long T and initial states,
for several chunk sizes and the step path (chunk 0) the tuner can pick instead; packed lengths
in both directions; streaming; and which path each target and knob selects."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.ir import rnn_program
from rnnc.ir.printer import layer_key
from rnnc.kernels import CELLS
from rnnc.lower import lower_layer
from rnnc.targets import get
from rnnc.tolerances import assert_close

IN = 6
VARIANTS = {"gla": {}, "retnet": {}, "hgrn2": {"lower_bound": 0.2}, "deltanet": {},
            "gated-deltanet": {"gated": True}, "mamba2": {"state_size": 5}}


def _module(variant: str, hidden: int = 16, width: int = IN) -> torch.nn.Module:
    torch.manual_seed(4)
    return CELLS[variant.removeprefix("gated-")].load_module_class()(width, hidden, num_heads=2, **VARIANTS[variant])


@pytest.mark.parametrize(("variant", "steps", "chunk"), list(itertools.product(VARIANTS, (1, 37, 130), (0, 16, 64))))
def test_matches_the_module(variant: str, steps: int, chunk: int) -> None:
    module = _module(variant)
    cell, weights = module.rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    compiled = CompiledProgram(prog, schedule={layer_key(cell): {"chunk": chunk}})
    path = next(iter(compiled.builds.values())).kernel.meta["path"]
    assert path == ("chunk" if chunk else "generic")
    x = torch.randn(3, steps, IN, generator=torch.Generator().manual_seed(steps))
    s0 = torch.randn(3, *cell.states[0].shape, generator=torch.Generator().manual_seed(1)) * 0.5
    y, s = compiled(x, s0[None])
    with torch.no_grad():
        want_y, (want_s,) = module(x, (s0,))
    assert_close(y, want_y, "float32", "c", f"{variant} y (chunk {chunk})")
    assert_close(s[0], want_s, "float32", "c", f"{variant} S (chunk {chunk})")


@pytest.mark.parametrize("variant", ["gla", "gated-deltanet", "mamba2", "mlstm"])
def test_bidirectional_packed_two_layers(variant: str) -> None:
    def make(width: int) -> torch.nn.Module:
        return _mlstm(width=width) if variant == "mlstm" else _module(variant, width=width)

    rows = [[make(IN) for _ in range(2)], [make(32) for _ in range(2)]]
    built = [[m.rnnc_layer() for m in row] for row in rows]
    prog = rnn_program([row[0][0] for row in built], [[w for _, w in row] for row in built], bidirectional=True,
                       batch_first=True, with_lengths=True)
    x = torch.randn(3, 29, IN, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([29, 11, 17])
    got = CompiledProgram(prog, schedule={layer_key(row[0][0]): {"chunk": 16} for row in built})(x, lengths)
    for k, (g, w) in enumerate(zip(got, prog.run(x, lengths), strict=True)):  # y, then every state
        assert_close(g, w, "float32", "c", f"{variant} output {k}")


def test_streaming_equals_the_full_sequence() -> None:
    cell, weights = _module("gla").rnnc_layer()
    compiled = CompiledProgram(rnn_program([cell], [[weights]]))
    x = torch.randn(2, 12, IN, generator=torch.Generator().manual_seed(3))
    y_full, final = compiled(x)
    stream = compiled.stream(batch=2)
    ys = [stream.step(x[:, t])[0].clone() for t in range(8)]
    y_rest, st = stream.step(x[:, 8:])
    assert_close(torch.cat([torch.stack(ys, 1), y_rest], 1), y_full, "float32", "c", "streamed y")
    assert_close(st[0], final, "float32", "c", "streamed S")


def test_path_selection() -> None:
    """CPU: chunkwise by default (C=64), the tuner's chunk knob (0: step by step); GPU targets and
    cells without a chunk form never take it."""
    cell = _module("retnet").rnnc_layer()[0]
    assert lower_layer(cell, get("cpu/host")).meta == {**lower_layer(cell, get("cpu/host")).meta, "chunk": 64}
    assert lower_layer(cell, get("cpu/host"), {"chunk": 32}).meta["chunk"] == 32
    assert lower_layer(cell, get("cpu/host"), {"chunk": 0}).meta["path"] == "generic"
    assert lower_layer(cell, get("nvidia/h100-sxm")).meta["path"] != "chunk"
    lstm = CELLS["lstm"].load_module_class()(IN, 16).rnnc_layer()[0]
    assert lower_layer(lstm, get("cpu/host"), {"chunk": 32}).meta["path"] != "chunk"


def test_the_tuner_searches_the_chunk_length() -> None:
    from rnnc.tune.adapt_c import ADAPTER
    from rnnc.tune.layers import layers_of

    cell, weights = _module("deltanet").rnnc_layer()
    layer = layers_of(rnn_program([cell], [[weights]]), batch=2, seq_len=256)[0]
    chunks = [dict(s.params)["chunk"] for s in ADAPTER.knob_variants(layer, get("cpu/host"))]
    assert chunks == [0, 16, 32, 128]


def test_empty_sequences_and_batches() -> None:
    """T = 0 or B = 0: an empty output and the initial state back, as the module gives."""
    cell, weights = _module("gla").rnnc_layer()
    compiled = CompiledProgram(rnn_program([cell], [[weights]], with_states=True))
    for batch, steps in ((2, 0), (0, 5)):
        s0 = torch.randn(batch, *cell.states[0].shape)
        y, s = compiled(torch.randn(batch, steps, IN), s0[None])
        assert y.shape == (batch, steps, 16) and torch.equal(s[0], s0)


def _mlstm(forget_gate: str = "sigmoid", hidden: int = 16, width: int = IN) -> torch.nn.Module:
    torch.manual_seed(5)
    return CELLS["mlstm"].load_module_class()(width, hidden, num_heads=2, forget_gate=forget_gate)


@pytest.mark.parametrize(("forget_gate", "steps", "chunk"),
                         list(itertools.product(("sigmoid", "exp"), (1, 37, 130), (0, 16, 64))))
def test_mlstm_matches_the_module(forget_gate: str, steps: int, chunk: int) -> None:
    """mLSTM runs the "gla" loop nest with its normaliser as a value column and its stabilisers
    computed first (``rnnc.ir.chunkform``); all three states come back as the module's."""
    module = _mlstm(forget_gate)
    cell, weights = module.rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    compiled = CompiledProgram(prog, schedule={layer_key(cell): {"chunk": chunk}})
    meta = next(iter(compiled.builds.values())).kernel.meta
    assert meta["path"] == ("chunk" if chunk else "generic")
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(3, steps, IN, generator=gen)
    s0 = [torch.randn(3, *s.shape, generator=gen) * 0.5 for s in cell.states]
    y, *s = compiled(x, *(t[None] for t in s0))
    with torch.no_grad():
        want_y, want_s = module(x, tuple(s0))
    assert_close(y, want_y, "float32", "c", f"mlstm y (chunk {chunk})")
    for got, want, what in zip(s, want_s, "Cnm", strict=True):
        assert_close(got[0], want, "float32", "c", f"mlstm {what} (chunk {chunk})")


def test_mlstm_stabiliser_under_growth() -> None:
    """Input gates near e^60 and a growing forget gate (exp gate, log f = +1): the kernel's
    exponents stay <= 0, so nothing overflows; states as the module's, and y as close to the
    float64 module as the float32 module is (|nᵀq| near zero makes y ill-conditioned here)."""
    module = _mlstm("exp")
    with torch.no_grad():
        module.bias_i.fill_(60.0)
        module.bias_f.fill_(1.0)
    cell, weights = module.rnnc_layer()
    compiled = CompiledProgram(rnn_program([cell], [[weights]]), schedule={layer_key(cell): {"chunk": 32}})
    x = torch.randn(2, 150, IN, generator=torch.Generator().manual_seed(6))
    y, *s = compiled(x)
    with torch.no_grad():
        want_y, want_s = module(x)
        ref_y, _ = module.double()(x.double())
    assert torch.isfinite(y).all() and want_s[2].min() > 100
    for got, want, what in zip(s, want_s, "Cnm", strict=True):
        assert_close(got[0], want, "float32", "c", f"mlstm {what}")
    own = (want_y.double() - ref_y).abs().max()
    assert (y.double() - ref_y).abs().max() <= 4 * own + 1e-4 * ref_y.abs().max()


def test_mlstm_streaming_equals_the_full_sequence() -> None:
    cell, weights = _mlstm().rnnc_layer()
    compiled = CompiledProgram(rnn_program([cell], [[weights]]))
    x = torch.randn(2, 12, IN, generator=torch.Generator().manual_seed(3))
    y_full, *final = compiled(x)
    stream = compiled.stream(batch=2)
    ys = [stream.step(x[:, t])[0].clone() for t in range(8)]
    y_rest, st = stream.step(x[:, 8:])
    assert_close(torch.cat([torch.stack(ys, 1), y_rest], 1), y_full, "float32", "c", "streamed y")
    for got, want in zip(st, final, strict=True):
        assert_close(got, want, "float32", "c", "streamed state")
