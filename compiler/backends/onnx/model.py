"""Program -> ONNX ModelProto: graph inputs/outputs, weights, metadata, and the checks.

The full model keeps batch and time symbolic (``dim_param``), so one file serves every length.
The streaming model is the same graph with every non-batch symbolic dim fixed to the example
input's size: one chunk of that length in, state in, state out; a one-step chunk also inlines
Scan bodies so no loop is left.  Every model is checked with ``onnx.checker`` (full check) and
strict shape inference before it is returned, so a broken file never reaches a user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import onnx
from onnx import helper

import rnnc
from rnnc.backends.onnx import rnn as _rnn  # noqa: F401  (registers the rnn renderer)
from rnnc.backends.onnx.emit import Emitter, OnnxGraph, to_numpy
from rnnc.backends.onnx.intformat import make_exact
from rnnc.backends.onnx.legalize import legalize
from rnnc.backends.onnx.peephole import clean, drop_unread_initializers, store_half_exact, value_reads
from rnnc.backends.onnx.render import MIN_EXPORT_OPSET, render_nodes, unsupported
from rnnc.backends.onnx.states import StateIO, expose_states
from rnnc.errors import RnncError, UnsupportedError, UserInputError
from rnnc.ir import Program, cells_of
from rnnc.targets.providers import Provider


def check_opset(opset: Any) -> int:
    """The opset as an int in the range onnx can check; a clear error otherwise."""
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_EXPORT_OPSET <= opset <= top:
        raise UserInputError(f"ONNX opset {opset!r} is not supported; pick an integer from {MIN_EXPORT_OPSET} to {top} "
                             f"(onnxruntime {_ort_version()} runs up to its own maximum, typically lower)")
    return opset


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        return "?"


def streaming_dims(program: Program, states: Sequence[StateIO], example_inputs: Sequence[Any],
                   fix_batch: bool = False) -> dict[str, int]:
    """Bind every non-batch symbolic input dim to the example's size (the chunk length).

    The batch symbol is the one the states carry (``[L*D, B, ...]``), so it stays dynamic,
    unless ``fix_batch`` (a provider that takes fixed shapes only, e.g. NNAPI).
    """
    g = program.graph
    if example_inputs is None or len(example_inputs) < len(g.inputs):
        raise UserInputError(f"a streaming export needs one example input per model input ({len(g.inputs)}: "
                             f"{', '.join(g.input_names)}) to fix the chunk length")
    batch = set() if fix_batch else {s.type.shape[1] for s in states
                                     if s.type.rank > 1 and isinstance(s.type.shape[1], str)}
    dims: dict[str, int] = {}
    for (name, ttype), value in zip(g.inputs, example_inputs[:len(g.inputs)], strict=True):
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) != ttype.rank:
            raise UserInputError(f"example input {name} has shape {shape}, the model expects {ttype.text()}")
        for d, size in zip(ttype.shape, shape, strict=True):
            if isinstance(d, str) and d not in batch and d != "?":
                dims.setdefault(d, int(size))
    return dims


def _domains(nodes: Sequence[onnx.NodeProto]) -> set[str]:
    """Non-default op domains used by ``nodes`` or their bodies (``com.microsoft`` int4 kernels)."""
    found: set[str] = set()
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            found.add(node.domain)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found |= _domains(attr.g.node)
    return found


def _fold_output_identities(nodes: list[onnx.NodeProto], outputs: set[str], inputs: set[str]) -> None:
    """``v = Op(...); out = Identity(v)`` -> ``out = Op(...)`` (other readers of ``v`` read
    ``out``): the renderers name values after the IR, the graph outputs after the Program's
    outputs, and every node a streaming step model runs costs time on each call."""
    producers = {o: n for n in nodes for o in n.output}
    in_bodies = value_reads([n for n in nodes if any(a.type == onnx.AttributeProto.GRAPH for a in n.attribute)])
    for node in list(nodes):
        src = node.input[0] if node.op_type == "Identity" else ""
        if node.output[0] not in outputs or src not in producers or src in outputs | inputs or in_bodies[src]:
            continue
        out = node.output[0]
        nodes.remove(node)
        producer = producers.pop(src)
        producer.output[list(producer.output).index(src)] = out
        producers[out] = producer
        for reader in nodes:
            for i, name in enumerate(reader.input):
                if name == src:
                    reader.input[i] = out


def _fold_squeeze_of_unsqueeze(nodes: list[onnx.NodeProto], outputs: set[str]) -> None:
    """``u = Unsqueeze(v, axes); w = Squeeze(u, axes)`` -> ``w = Identity(v)``: a layer's final
    state is written ``[1, B, H]`` and the model often selects it back to ``[B, H]``; in a one-step
    streaming model every such node is paid on each call.  Only folds when both read the very same
    axes constant, so the shapes provably round-trip."""
    producers = {o: n for n in nodes for o in n.output}
    for node in list(nodes):
        if node.op_type != "Squeeze" or len(node.input) != 2:
            continue
        src = producers.get(node.input[0])
        if src is None or src.op_type != "Unsqueeze" or len(src.input) != 2 or src.input[1] != node.input[1]:
            continue
        out, value = node.output[0], src.input[0]
        if out in outputs:
            nodes[nodes.index(node)] = helper.make_node("Identity", [value], [out], name=node.name)
            continue
        nodes.remove(node)  # an intermediate: its readers read the unsqueezed value's source directly
        for reader in nodes:
            for i, name in enumerate(reader.input):
                if name == out:
                    reader.input[i] = value


def _metadata(program: Program, opset: int, streaming: bool, states: Sequence[StateIO],
              dims: dict[str, int], provider: Provider | None) -> dict[str, str]:
    cells = [c.kind for _, n in program.graph.walk() if n.op == "rnn" for c in cells_of(n)]
    extra = {"rnnc.provider": provider.tag} if provider else {}
    return {**extra,
        "rnnc.version": rnnc.__version__,
        "rnnc.program_hash": program.hash(),
        "rnnc.cells": ",".join(cells),
        "rnnc.opset": str(opset),
        "rnnc.streaming": json.dumps({"enabled": streaming, "fixed_dims": dims}),
        "rnnc.states": json.dumps([s.as_json() for s in states]),
    }


def to_onnx(program: Program, *, opset: int, streaming: bool = False,
            example_inputs: Sequence[Any] | None = None, check: bool = True,
            hoist: bool | str = True, target: Any = None, provider: Provider | None = None,
            linear_attention: bool = True) -> onnx.ModelProto:
    """Render ``program`` as a checked ModelProto (see the module docstring).

    ``target``: the CPU whose integer dot product the int8 weights must be exact on (default
    ``cpu/host``; ``intformat.make_exact``); models without integer products ignore it.
    ``provider`` (``targets/providers``): a streaming model in that execution provider's ops --
    every shape fixed where it takes fixed shapes only, recurrences written out over the chunk for
    accelerators (not for providers that share the CPU), quantized ops as QDQ where that is its
    int8 format, and ``legalize``'s rewrites.  ``linear_attention``: matrix-state layers as
    onnxruntime's ``com.microsoft.LinearAttention`` (``linattn.py``; never for a provider)."""
    opset = check_opset(opset)
    why = unsupported(program, opset)
    if why:
        raise UnsupportedError(f"cannot export {program.graph.name} to ONNX: {why}")
    exposed, states = expose_states(program)
    streaming = streaming or provider is not None
    dims = streaming_dims(program, states, example_inputs, fix_batch=bool(provider and provider.fixed_shapes)) \
        if streaming else {}
    g = exposed.graph
    # written out step by step for accelerators; a provider on the CPU (ORT Mobile, XNNPACK) leaves
    # recurrent ops to onnxruntime's CPU kernels, which run them in place
    unroll = provider is not None and not provider.shares_cpu
    emitter = Emitter(opset, program.weights, dims, hoist=hoist, unroll=unroll,
                      qdq=(provider.quant.activations, provider.quant.weights)
                      if provider and provider.quant.format == "qdq" else None,
                      linear_attention=linear_attention and provider is None)
    main = OnnxGraph(emitter)
    for name in (*g.input_names, *g.param_names):
        emitter.reserve(name)
    for name, ttype in g.inputs:
        main.add_input(name, ttype)
    names = render_nodes(main, g, {n: n for n in (*g.input_names, *g.param_names)})
    types = g.value_types()
    for out_name, value in g.outputs:
        src = names[value]
        if src != out_name:
            if emitter.taken(out_name):
                raise UnsupportedError(f"output name {out_name!r} clashes with another value of the model")
            emitter.reserve(out_name)
            main.nodes.append(helper.make_node("Identity", [src], [out_name], name=f"n_{out_name}"))
        main.add_output(out_name, types[value])
    main.nodes[:0] = emitter.prelude
    _fold_squeeze_of_unsqueeze(main.nodes, set(g.output_names))
    _fold_output_identities(main.nodes, set(g.output_names), set(g.input_names))
    small = {p: to_numpy(program.weights[p]) for p in g.param_names}  # scales and zero points a fold compares
    const_weights = [onnx.numpy_helper.from_array(a, p) for p, a in small.items() if a.size <= 64]
    emitter.initializers += clean(main.nodes, set(g.output_names), [*emitter.initializers, *const_weights])
    graph_proto = main.make(g.name)
    used = set(value_reads(graph_proto.node))
    weights = [onnx.numpy_helper.from_array(to_numpy(program.weights[p]), p) for p in g.param_names if p in used]
    graph_proto.initializer.extend([*weights, *emitter.initializers])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph_proto, opset_imports=opsets, producer_name="rnnc",
                              producer_version=rnnc.__version__,
                              doc_string=f"rnnc export of {g.name} ({'streaming' if streaming else 'full'})")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    model.opset_import.extend(helper.make_opsetid(d, 1) for d in sorted(_domains(graph_proto.node)))
    helper.set_model_props(model, _metadata(program, opset, streaming, states, dims, provider))
    make_exact(model, target)
    if provider is not None:  # what was rewritten for the provider, for the export report
        helper.set_model_props(model, {**{m.key: m.value for m in model.metadata_props},
                                       "rnnc.rewrites": json.dumps(legalize(model, provider))})
    drop_unread_initializers(model.graph)
    if provider is None:  # accelerators take their own constant formats (legalize)
        store_half_exact(model.graph)
    if check:
        check_model(model)
    return model


def check_model(model: onnx.ModelProto) -> None:
    """``onnx.checker`` (full) and strict shape inference; a failure is an exporter bug.

    Strict inference runs with onnx's data propagation, and once more without it where that
    alone fails: the propagation reads every small int64 tensor as shape data, so index grids
    built by broadcasting (``arange(8)[None] + arange(3)[:, None]``, an im2col's rows) fail its
    rank check though the model is valid -- onnxruntime runs them."""
    try:
        onnx.checker.check_model(model, full_check=True)
        try:
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        except onnx.shape_inference.InferenceError:
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=False)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RnncError(f"the exported ONNX model failed validation (an rnnc bug, please report it): {exc}") from None
