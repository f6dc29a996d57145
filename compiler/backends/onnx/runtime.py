"""Running an exported model in onnxruntime with its recurrent states carried between calls.

The exported graph is stateless (states are plain inputs and outputs, see ``states.py``);
``StatefulSession`` reads the ``rnnc.states`` metadata, feeds zeros on the first call and the
returned states on every later one, so streaming code is ``for chunk in audio: y = sess(chunk)``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnx

from rnnc.errors import UserInputError
from rnnc.ir import symdims


class StatefulSession:
    """``sess(*inputs) -> outputs``: the model's own inputs and outputs (the state inputs and
    outputs the exporter added are handled here); states persist until :meth:`reset`."""

    def __init__(self, model: onnx.ModelProto | str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model))
        meta = {p.key: p.value for p in proto.metadata_props}
        if "rnnc.states" not in meta:
            raise UserInputError("this ONNX model was not exported by rnnc (no rnnc.states metadata)")
        self.states = json.loads(meta["rnnc.states"])
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        state_inputs = {s["input"] for s in self.states}
        state_outputs = {s["output"] for s in self.states if s.get("added_output", True)}
        self.inputs = [i for i in self.session.get_inputs() if i.name not in state_inputs]
        self.outputs = [o.name for o in self.session.get_outputs() if o.name not in state_outputs]
        self._carried: dict[str, np.ndarray] | None = None

    def reset(self) -> None:
        """Start a new sequence: the next call begins from zero states."""
        self._carried = None

    def _zeros(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes = {p: feeds[i.name].shape[k] for i in self.inputs for k, p in enumerate(i.shape) if isinstance(p, str)}
        out = {}
        for s in self.states:
            shape = []
            for d in s["shape"]:
                n = symdims.evaluate(d, sizes)  # B, or a size computed from the inputs' (DPRNN's 2*K*B)
                if n is None:
                    raise UserInputError(f"cannot tell the size of dim {d!r} of state {s['input']} from the inputs")
                shape.append(n)
            out[s["input"]] = np.zeros(shape, dtype=np.dtype(s["dtype"]))
        return out

    def __call__(self, *inputs: Any) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            names = ", ".join(i.name for i in self.inputs)
            raise UserInputError(f"the model takes {len(self.inputs)} inputs ({names}), got {len(inputs)}")
        feeds = {i.name: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in zip(self.inputs, inputs,
                                                                                                strict=True)}
        feeds.update(self._carried if self._carried is not None else self._zeros(feeds))
        results = dict(zip([o.name for o in self.session.get_outputs()], self.session.run(None, feeds), strict=True))
        self._carried = {s["input"]: results[s["output"]] for s in self.states}
        return [results[n] for n in self.outputs]
