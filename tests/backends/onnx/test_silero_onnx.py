"""Silero VAD (real model, real speech): rnnc's ONNX export streamed in onnxruntime equals the original."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import torch

import rnnc
from rnnc.data import speech_sample
from rnnc.frontend.silero import CHUNK, CONTEXT, load_inner_model, stream, trace_silero
from rnnc.tolerances import assert_close


def test_silero_onnx_matches_original_on_speech(tmp_path):
    program = trace_silero()
    path = tmp_path / "silero.onnx"
    rnnc.export_onnx(program, (torch.zeros(1, CONTEXT + CHUNK), torch.zeros(2, 1, 128)), str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rnnc.program_hash"] == program.hash()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == ["x", "state"]

    def step(x: torch.Tensor, state: torch.Tensor):
        prob, new_state = sess.run(["output_0", "output_1"], {"x": x.numpy(), "state": state.numpy()})[:2]
        return torch.from_numpy(prob), torch.from_numpy(new_state)

    audio = torch.from_numpy(speech_sample()[0][: 16000 * 10])  # 10 s of real speech
    inner = load_inner_model()
    with torch.no_grad():
        ref = stream(lambda x, s: inner(x, s), audio)
    got = stream(step, audio)
    assert ref.shape == got.shape and ref.shape[1] == 10 * 16000 // CHUNK
    assert_close(got, ref, backend="onnxruntime", msg="silero probabilities")
    # batch of 2 different streams at once (batch is dynamic in the export)
    both = torch.stack([audio, audio.flip(0)])
    with torch.no_grad():
        ref2 = stream(lambda x, s: inner(x, s), both)
    assert_close(stream(step, both), ref2, backend="onnxruntime", msg="silero batch 2")
