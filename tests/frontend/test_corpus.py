"""The frontend on recurrent models written the way public repositories write them.

Each entry of ``tests/frontend/corpus`` (CRNNs, DeepSpeech2, speaker encoders, tied-weight LMs,
seq2seq with attention, Tacotron-style decoders, packed BiLSTM taggers, ...) is traced from one
example (batch 2), with its batch and length symbolic, and then run at a batch and a length it
was not traced at, three ways, each against torch eager on the same inputs: the Program in
rnnc's interpreter, its ONNX export in onnxruntime, and ``rnnc.compile``'s module.  The few
entries whose length cannot stay symbolic yet are listed below with the reason; for them the
test checks that ``trace`` warns and keeps the batch symbolic, and runs them at the traced length.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from corpus import CORPUS, Entry  # tests/frontend/corpus (pytest puts this folder on sys.path)

import rnnc
from rnnc.tolerances import assert_close

#: entries whose length rnnc cannot keep symbolic yet, and why: ``trace`` warns naming the check
#: that failed, keeps the batch symbolic and the length at the example's (docs/frontend.md)
FIXED_LENGTH: dict[str, str] = {}
#: entries where neither stays symbolic yet (none: DPRNN, whose reshapes combine B with sizes
#: computed from T, keeps both since sizes are named by their expressions, ``rnnc.ir.symdims``)
FIXED_ALL: set[str] = set()


def _length(entry: Entry, want: int) -> int:
    m = entry.length_multiple
    return max(entry.min_length, -(-want // m) * m)


def _flat(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    items: list[torch.Tensor] = []
    for o in out:  # type: ignore[union-attr]
        items.extend(_flat(o))
    return items


@pytest.fixture(scope="module")
def traced() -> dict[str, tuple[torch.nn.Module, rnnc.ir.Program, tuple, tuple]]:
    return {}


def _setup(name: str, cache: dict) -> tuple:
    if name not in cache:
        entry = CORPUS[name]
        model = entry.build()
        example = entry.inputs(2, _length(entry, 24))
        fixed = name in FIXED_LENGTH or name in FIXED_ALL
        unseen = entry.inputs(2 if name in FIXED_ALL else 3, _length(entry, 24 if fixed else 40))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            program = rnnc.trace(model, example)
        said = [str(w.message) for w in caught if "rnnc.trace" in str(w.message)]
        with torch.no_grad():
            want = _flat(model(*unseen))
        cache[name] = (model, program, example, unseen, want, said)
    return cache[name][:5]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_traces_with_batch_and_length_symbolic(name: str, traced: dict) -> None:
    entry = CORPUS[name]
    _, program, _, unseen, want = _setup(name, traced)
    said = traced[name][5]
    for (input_name, ttype), dyn in zip(program.graph.inputs, entry.dynamic, strict=True):
        for dim, role in (dyn or {}).items():
            fixed = name in FIXED_ALL or (name in FIXED_LENGTH and role != "B")
            assert isinstance(ttype.shape[dim], str) != fixed, (
                f"{name}: input {input_name} dim {dim} ({role}) in {ttype.text()}")
    if name in FIXED_LENGTH or name in FIXED_ALL:  # the trace says what it fixed, and why
        assert said and "kept fewer dims symbolic" in said[0], said
    else:
        assert not said, said
    got = _flat(program.run(*unseen))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, backend="interp")


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_onnx_export_matches_torch_in_onnxruntime(name: str, traced: dict, tmp_path) -> None:
    from rnnc.backends.onnx.runtime import StatefulSession

    _, program, _, unseen, want = _setup(name, traced)
    path = tmp_path / f"{name}.onnx"
    rnnc.export_onnx(program, path=path)
    got = StatefulSession(str(path))(*unseen)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert_close(torch.from_numpy(g), w, backend="onnxruntime")


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_compiled_module_matches_torch(name: str, traced: dict) -> None:
    model, _, example, unseen, want = _setup(name, traced)
    compiled = rnnc.compile(model, example)
    got = _flat(compiled(*unseen))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, backend="c")
