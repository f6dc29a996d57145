"""The native whole-model program (``rnnc.backends.cstyle.whole``): every op and the layer kernels
in one C function per input signature, checked against the model in torch eager."""

from __future__ import annotations

import json

import pytest
import torch

import rnnc
from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.backends.cstyle.whole import NativeProgram
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.tolerances import assert_close


class ConvGru(torch.nn.Module):
    """Grouped, strided and dilated convs, a two-layer bidirectional GRU, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv1d(6, 8, 3, padding=1)
        self.c2 = torch.nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.c3 = torch.nn.Conv1d(8, 8, 4, stride=2)
        self.gru = torch.nn.GRU(8, 12, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(x.transpose(1, 2)))))))
        return torch.sigmoid(self.head(self.gru(y.transpose(1, 2))[0]))


class Spectral(torch.nn.Module):
    """Silero's shape of model: reflect pad, an STFT as a strided conv, magnitude, an LSTM fed
    and returning its state, a stacked state, a mean."""

    def __init__(self) -> None:
        super().__init__()
        self.stft = torch.nn.Conv1d(1, 18, 16, stride=8, bias=False)
        self.enc = torch.nn.Conv1d(9, 10, 3, padding=1)
        self.lstm = torch.nn.LSTM(10, 10, batch_first=True)
        self.dec = torch.nn.Conv1d(10, 1, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.nn.functional.pad(x, (0, 8), mode="reflect").unsqueeze(1)
        spec = self.stft(x)
        mag = torch.sqrt(spec[:, :9] * spec[:, :9] + spec[:, 9:] * spec[:, 9:])
        z = torch.relu(self.enc(mag)).transpose(1, 2)
        y, (h, c) = self.lstm(z, (state[0:1], state[1:2]))
        out = torch.sigmoid(self.dec(torch.relu(y.transpose(1, 2)))).squeeze(1).mean(dim=1, keepdim=True)
        return out, torch.cat([h, c], dim=0)


class Tagger(torch.nn.Module):
    """Token ids in: an embedding, an LSTM, the last step's features through an MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 7)
        self.lstm = torch.nn.LSTM(7, 9, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(9, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.lstm(self.emb(ids))[0][:, -1])


class Wide(torch.nn.Module):
    """Convs, a head and an elementwise chain large enough to be split across threads."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv1d(32, 64, 5, padding=2)
        self.lstm = torch.nn.LSTM(64, 32, batch_first=True)
        self.head = torch.nn.Linear(64, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.c1(x.transpose(1, 2))).transpose(1, 2)  # [B, T, 64]
        gate = torch.sigmoid(z) * torch.tanh(z + 1.0) - 0.5 * z  # one fused loop
        return self.head(gate * 2.0), self.lstm(z)[0]


def _cases(batch: int) -> list[tuple[str, torch.nn.Module, tuple]]:
    torch.manual_seed(batch)
    return [("convgru", ConvGru().eval(), (torch.randn(batch, 21, 6),)),
            ("spectral", Spectral().eval(), (torch.randn(batch, 64) * 0.3, torch.randn(2, batch, 10) * 0.1)),
            ("tagger", Tagger().eval(), (torch.randint(0, 20, (batch, 11)),)),
            ("wide", Wide().eval(), (torch.randn(batch, 700, 32),))]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", ["convgru", "spectral", "tagger", "wide"])
def test_native_program_matches_torch(case: str, batch: int) -> None:
    name, model, inputs = next(c for c in _cases(batch) if c[0] == case)
    native = NativeProgram(CompiledProgram(rnnc.trace(model, inputs)), None, inputs)
    with torch.no_grad():
        want = model(*inputs)
        got = native(*inputs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                    strict=True):
        assert g.shape == w.shape
        assert_close(g, w, "float32", "c")


def test_a_new_shape_is_planned_and_outputs_are_fresh() -> None:
    _, model, inputs = _cases(2)[0]
    native = NativeProgram(CompiledProgram(rnnc.trace(model, inputs)), None, inputs)
    first = native(*inputs)
    again = native(*inputs)
    assert first.data_ptr() != again.data_ptr() and torch.equal(first, again)  # a caller may keep outputs
    longer = torch.randn(4, 33, 6)
    with torch.no_grad():
        assert_close(native(longer), model(longer), "float32", "c")
    assert len(native._plans) == 2 and len(native.sources) >= 2


def test_unsupported_op_is_named_and_compile_still_works() -> None:
    class Normed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(4, 6, batch_first=True)
            self.norm = torch.nn.LayerNorm(6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.gru(x)[0])

    model, x = Normed().eval(), torch.randn(2, 5, 4)
    program = rnnc.trace(model, (x,))
    with pytest.raises(UnsupportedError, match="layer_norm"):
        NativeProgram(CompiledProgram(program), None, (x,))
    compiled = rnnc.compile(model, (x,), target="cpu/host")
    assert "skipped native: the native whole-model program cannot lower op 'layer_norm'" in compiled.explain()
    with torch.no_grad():
        assert_close(compiled(x), model(x), "float32", "c")


def test_compile_times_the_native_engine() -> None:
    _, model, inputs = _cases(1)[1]
    compiled = rnnc.compile(model, inputs, target="cpu/host")
    assert "native " in compiled.explain().splitlines()[0]  # timed beside c and onnx
    with torch.no_grad():
        for g, w in zip(compiled(*inputs), model(*inputs), strict=True):
            assert_close(g, w, "float32", "c" if compiled.choice.backend != "onnx" else "onnxruntime")


def test_float64_inputs_are_refused_not_converted() -> None:
    _, model, inputs = _cases(1)[0]
    native = NativeProgram(CompiledProgram(rnnc.trace(model, inputs)), None, inputs)
    with pytest.raises(UnsupportedError, match="float32 and int64"):
        native(inputs[0].double())


def test_output_directory_runs_natively_and_rejects_unknown_engines(tmp_path) -> None:
    from rnnc.backends import get_backend

    _, model, inputs = _cases(1)[2]
    program = rnnc.trace(model, inputs)
    out = tmp_path / "tagger"
    get_backend("c").compile(program, rnnc.targets.get("cpu/host"), str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "engine": "native"}))
    loaded = rnnc.load(str(out))
    assert isinstance(loaded, NativeProgram)
    with torch.no_grad():
        assert_close(loaded(*inputs), model(*inputs), "float32", "c")
    (out / "manifest.json").write_text(json.dumps({**manifest, "engine": "warp-drive"}))
    with pytest.raises(UserInputError, match="warp-drive"):
        rnnc.load(str(out))


def test_whole_model_streams_with_its_state_inside() -> None:
    """``prob, state = model(chunk, state)`` streamed: the state never leaves the stepper."""
    _, model, inputs = _cases(2)[1]
    compiled = rnnc.compile(model, inputs, target="cpu/host")
    stream = compiled.stream(batch=2)
    row = "onnxruntime" if compiled.choice.backend == "onnx" else "c"  # whichever engine was measured fastest
    state = torch.zeros(2, 2, 10)
    chunks = [torch.randn(2, 64) * 0.3 for _ in range(4)]
    with torch.no_grad():
        for chunk in chunks:
            want, state = model(chunk, state)
            assert_close(stream.step(chunk), want, "float32", row)
        assert_close(stream.states[0], state, "float32", row)
        stream.reset()
        assert_close(stream.step(chunks[0]), model(chunks[0], torch.zeros(2, 2, 10))[0], "float32", row)
    with pytest.raises(UserInputError, match="1 non-state input"):
        stream.step(chunks[0], chunks[1])
    with pytest.raises(UserInputError, match="states=2"):
        compiled.stream(batch=2, states=2)
    _, stateless, example = _cases(1)[2]
    with pytest.raises(UnsupportedError, match="no state inputs"):
        rnnc.compile(stateless, example, target="cpu/host").stream(1)


class _Gru(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.g = torch.nn.GRU(4, 5, batch_first=True)
        self.e = torch.nn.Embedding(12, 4)
        self.o = torch.nn.Linear(5, 2)
        self.register_buffer("h0", torch.randn(1, 1, 5))


def _native(model: torch.nn.Module, inputs: tuple) -> NativeProgram:
    return NativeProgram(CompiledProgram(rnnc.trace(model.eval(), inputs)), None, inputs)


def test_edge_inputs_match_torch_or_are_refused_by_name() -> None:
    torch.manual_seed(3)

    class FromBuffer(_Gru):  # the initial state is a stored tensor, not an input
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.o(self.g(x, self.h0)[0])

    class LastFrames(_Gru):  # a negative slice start longer than the sequence: torch clamps it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.o(self.g(x[:, -100:])[0])

    class Mask(_Gru):  # a boolean result: computed in float it would be wrong, so it is refused
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.g(x)[0] > 0

    x = torch.randn(1, 6, 4)  # batch 1: the stored state's
    for cls in (FromBuffer, LastFrames):
        model = cls()
        with torch.no_grad():
            assert_close(_native(model, (x,))(x), model.eval()(x), "float32", "c")
    with pytest.raises(UnsupportedError, match="bool"):
        _native(Mask(), (x,))


def test_embedding_indices_are_checked_like_torch() -> None:
    class Tokens(_Gru):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.g(self.e(ids))[0]

    ids = torch.randint(0, 12, (2, 6))
    native = _native(Tokens(), (ids,))
    bad = ids.clone()
    bad[1, 1] = 12
    with pytest.raises(IndexError, match="out of range"):
        native(bad)
    with pytest.raises(IndexError, match="out of range"):
        Tokens()(bad)  # the same error torch gives


def test_two_rnn_nodes_with_no_steps() -> None:
    class Chain(_Gru):
        def __init__(self) -> None:
            super().__init__()
            self.b = torch.nn.GRU(5, 3, batch_first=True)

        def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y, h1 = self.g(x, h)
            return self.b(y)[0], h1

    h = torch.randn(1, 2, 5)
    native = _native(Chain(), (torch.randn(2, 6, 4), h))
    y, h1 = native(torch.randn(2, 0, 4), h)
    assert y.shape == (2, 0, 3) and torch.equal(h1, h)  # no steps: the state passes through


def test_one_weight_in_several_windows_packs_each() -> None:
    """A weight read whole, reshaped and sliced: each window is its own GEMM panel."""
    class Windows(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(64, 16))

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            f = torch.nn.functional
            return f.linear(x, self.w), f.linear(x, self.w[32:]), f.linear(y, self.w.reshape(32, 32))

    model = Windows().eval()
    inputs = (torch.randn(2, 9, 16), torch.randn(2, 9, 32))
    with torch.no_grad():
        for got, want in zip(_native(model, inputs)(*inputs), model(*inputs), strict=True):
            assert_close(got, want, "float32", "c")


def _corpus(name: str):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "frontend"))
    from corpus import CORPUS

    return CORPUS[name]


@pytest.mark.parametrize("name", ["qrnn_window2", "sru_bidirectional"])
def test_corpus_loop_models_run_natively(name: str) -> None:
    """Python-loop recurrences rolled into rnn nodes (QRNN with its peeled first step and the
    sequence lengths that mask it, a bidirectional SRU): dynamic-shape ops, plan constants and
    lengths, against the model in eager torch."""
    entry = _corpus(name)
    model = entry.build().eval()
    inputs = entry.inputs(3, 12)
    native = NativeProgram(CompiledProgram(rnnc.trace(model, inputs, dynamic=entry.dynamic)), None, inputs)
    with torch.no_grad():
        got, want = native(*inputs), model(*inputs)
        longer = entry.inputs(2, 17)  # another signature: planned anew
        got2, want2 = native(*longer), model(*longer)
    for g, w in ((got, want), (got2, want2)):
        g, w = (g[0], w[0]) if isinstance(w, tuple) else (g, w)
        assert_close(g, w, "float32", "c")


def test_packed_sequences_are_refused_by_name() -> None:
    """pad_packed_sequence's output length is max(lengths): a size the input shapes do not fix."""
    entry = _corpus("bilstm_tagger_packed")
    model, inputs = entry.build().eval(), entry.inputs(3, 12)
    with pytest.raises(UnsupportedError, match="trim_to_lengths"):
        NativeProgram(CompiledProgram(rnnc.trace(model, inputs, dynamic=entry.dynamic)), None, inputs)
