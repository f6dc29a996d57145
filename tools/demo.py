"""``make demo``: rnnc end to end on real models, one readable line per step.

Artifacts go under ``demo_out/``.  Each step is independent: a failure prints why and the demo
goes on, and the exit code is non-zero if any step failed.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

OUT = Path("demo_out")


def step(title: str, fn: Callable[[], str]) -> bool:
    t0 = time.perf_counter()
    try:
        line = fn()
    except Exception as exc:  # the demo reports and goes on
        print(f"[FAIL] {title}: {type(exc).__name__}: {exc}")
        traceback.print_exc(limit=3, file=sys.stderr)
        return False
    print(f"[ ok ] {title} ({time.perf_counter() - t0:.1f} s): {line}")
    return True


def lstm_demo() -> str:
    import rnnc

    torch.manual_seed(0)
    model = torch.nn.LSTM(40, 128, num_layers=2, bidirectional=True, batch_first=True).eval()
    program = rnnc.trace(model, (torch.randn(2, 16, 40),))
    (OUT / "lstm_2layer_bidir.ir").write_text(program.text())
    print(program.summary())
    x = torch.randn(3, 50, 40)  # another batch and length than the traced ones
    with torch.no_grad():
        ref = model(x)[0]
    got = program.run(x)[0]
    return f"2-layer bidirectional LSTM traced at T=16, run at T=50: max |IR - torch| = " \
           f"{(got - ref).abs().max().item():.2e}"


def silero_demo() -> str:
    import numpy as np

    from rnnc.data import speech_frame_labels, speech_sample
    from rnnc.frontend.silero import load_inner_model, stream, trace_silero

    program = trace_silero()
    (OUT / "silero_vad.ir").write_text(program.text())
    print(program.summary())
    audio, _rate = speech_sample()
    audio_t = torch.from_numpy(audio)
    inner = load_inner_model()
    with torch.no_grad():
        stream(lambda x, s: inner(x, s), audio_t[: 16 * 512])  # TorchScript profiles its first calls
        t0 = time.perf_counter()
        ref = stream(lambda x, s: inner(x, s), audio_t)[0]
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = stream(lambda x, s: program.run(x, s), audio_t)[0]
    t_ir = time.perf_counter() - t0
    labels = speech_frame_labels(len(ref))
    acc = float(((got.numpy() > 0.5) == labels).mean())
    np.save(OUT / "silero_probs.npy", got.numpy())
    return (f"{len(ref)} chunks of 32 ms: max |IR - original| = {(got - ref).abs().max().item():.2e}, "
            f"frame accuracy vs labels {acc:.3f}; IR interpreter {t_ir:.2f} s, TorchScript {t_ref:.2f} s")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    ok = [
        step("trace + interpret a 2-layer bidirectional LSTM", lstm_demo),
        step("trace + interpret Silero VAD on real speech", silero_demo),
    ]
    print(f"demo: {sum(ok)}/{len(ok)} steps ok; artifacts in {OUT}/")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
