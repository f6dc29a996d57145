"""ONNX renderings of the quantized IR ops (``qlinear``, ``qconv1d``) with integer kernels.

The meaning is ``rnnc.ir.ops_quant``; here each activation mode becomes what onnxruntime runs
as a real integer kernel:

* ``dynamic``: ``DynamicQuantizeLinear`` (uint8, per tensor) -> ``MatMulInteger`` /
  ``ConvInteger`` against int8 weights -> int32 -> one float rescale (``x_scale * w_scale``);
* ``static``: ``QuantizeLinear`` with the calibrated (clipped) scale (uint8, zero point 128:
  the IR's symmetric int8 codes shifted onto the u8s8 fast path) -> the same integer kernels;
* ``none`` (weight-only int8): the int8 weight widened by ``Cast``/``Mul`` in the main graph's
  prelude, also for weights used inside a Scan body (folded once at load:
  a storage format; onnxruntime's QDQ fusion of ``DequantizeLinear`` fails inside Scan bodies);
* int4 group-wise weights: ``com.microsoft.MatMulNBits`` (packed 4-bit blocks), with
  ``accuracy_level=4`` (int8 activations inside the kernel) when activations are quantized;
  group-wise int8 weight-only (``group8``) is ``MatMulNBits`` with ``bits=8``.

Static chains: a static ``qconv1d`` whose output only feeds a ``relu`` that only feeds another
static ``qconv1d`` (Silero's encoder) becomes ``QLinearConv`` writing uint8 codes at the next
conv's calibrated scale (zero point 0: the ReLU is the requantisation's clamp at 0), and the
next conv reads those codes directly -- no float tensor, Relu, QuantizeLinear, Cast or rescale
between them.  Identical to the IR up to the requantisation's rounding (at most one code of the
next layer's input, where ``acc * s_x * s_w / s_next`` sits on a rounding tie) and the bias,
which ``QLinearConv`` adds in int32 (error <= ``s_x * s_w / 2``); codes above 127 (inputs
beyond the calibrated range) keep 255 levels where the IR saturates at 127.  Only a conv whose
``x_scale`` covers the calibrated max (``xrange="max"``, not a clipping percentile) is read
this way.  ``chain_links`` finds the chains; ``render_nodes`` hands them to the renderers.

Chain tails: a static conv -> relu whose output reaches, through shape ops only (squeeze,
unsqueeze, reshape, transpose), the input ``x`` of a one-direction ``rnn`` whose cell quantizes ``x``
statically (and uses it for nothing else) -- Silero's ``encoder.3`` -> LSTM -- also becomes
``QLinearConv``, writing codes at that cell projection's scale; the ReLU becomes one
``DequantizeLinear`` (zero point 0), and the cell's ``QuantizeLinear`` turns those values back
into the same codes.  Two nodes instead of ``ConvInteger``, ``Cast``, ``Mul``, bias ``Add``, ``Relu``.

Kept outlier channels are zeroed (one ``Mul`` by a 0/1 mask) before quantization and added
back through a small float ``MatMul``/``Conv`` on the gathered channels.  Weights are written
in the layout each kernel wants (``MatMulInteger`` has no transB, so ``[in, out]``).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from rnnc.backends.onnx.emit import OnnxGraph, to_numpy
from rnnc.backends.onnx.framed import framed_conv, frames_of, side_by_side
from rnnc.backends.onnx.ops import RENDERERS, Ins, Types, renders
from rnnc.errors import UnsupportedError
from rnnc.ir import Graph, Node
from rnnc.ir.rnn import rnn_layout, weight_slots

MS_DOMAIN = "com.microsoft"


def _weight(g: OnnxGraph, name: str | None, what: str) -> np.ndarray:
    """A param's tensor: quantized weights are laid out at export time, so they must be constants."""
    if not name or name not in g.emitter.weights:
        raise UnsupportedError(f"the ONNX quantized renderer needs {what} as a Program weight, got a computed value")
    return to_numpy(g.emitter.weights[name])


def _split_keep(g: OnnxGraph, x: str, ins: Ins, axis: int, rank: int, hint: str) -> tuple[str, str | None]:
    """(x with the kept channels zeroed, the gathered kept channels) or (x, None)."""
    if not ins[5]:
        return x, None
    idx = _weight(g, ins[5], "keep_idx")
    n = int(_weight(g, ins[1], "wq").shape[1])  # input channels (groups=1 is checked by the IR)
    mask = np.ones(n, np.float32)
    mask[idx] = 0.0
    shape = [n] + [1] * (rank - 1 - axis % rank)  # broadcasts over the axes after the channels
    m = g.emitter.initializer(f"{hint}.keep_mask", mask.reshape(shape))
    rest = g.op("Mul", x, m, hint=f"{hint}.rest")
    kept = g.op("Gather", x, ins[5], axis=axis, hint=f"{hint}.kept")
    return rest, kept


def _pack(q: np.ndarray, block: int, bits: int) -> np.ndarray:
    """MatMulNBits' ``B``: ``[N, K / block, block * bits / 8]`` uint8 of unsigned codes (code +
    2**(bits-1), the kernel's default zero point); int4 packs two per byte, low nibble first."""
    n, k = q.shape
    u = (q.astype(np.int16) + (1 << (bits - 1))).astype(np.uint8).reshape(n, k // block, block)
    return u if bits == 8 else (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _nbits_block(k: int, groups: int) -> int | None:
    """Block size for MatMulNBits: the group size, or for per-channel scales (one group) the
    largest power of two >= 16 dividing K (the scale is repeated per block); None if none fits."""
    if groups > 1:
        return k // groups
    return next((b for b in (256, 128, 64, 32, 16) if k % b == 0), None)


def _nbits(g: OnnxGraph, x: str, wq: np.ndarray, ws: np.ndarray, bits: int, act: str, hint: str) -> str | None:
    """``com.microsoft.MatMulNBits``: onnxruntime's packed low-bit weight kernel (None: shape unfit)."""
    n, k = wq.shape
    groups = ws.shape[1] if ws.ndim == 2 else 1
    block = _nbits_block(k, groups)
    if block is None:
        return None
    scales = np.repeat(ws.reshape(n, groups), (k // block) // groups, axis=1).astype(np.float32)
    b = g.emitter.initializer(f"{hint}.b{bits}", _pack(wq, block, bits))
    s = g.emitter.initializer(f"{hint}.s{bits}", scales.reshape(-1))
    return g.node("MatMulNBits", [x, b, s], f"{hint}.nbits", 1, domain=MS_DOMAIN, K=k, N=n, bits=bits,
                  block_size=block, accuracy_level=0 if act == "none" else 4)[0]


def _integer(g: OnnxGraph, x: str, act: str, x_scale: str | None, kernel, w_scale: str, hint: str) -> str:
    """Quantize ``x`` for ``act``, run ``kernel(xq, zero_point)`` (int32), rescale to float."""
    if act == "dynamic":
        xq, s, zp = g.node("DynamicQuantizeLinear", [x], f"{hint}.xq", 3)
    else:  # symmetric int8 shifted by 128 into uint8: the same codes, on onnxruntime's fast u8s8 path
        assert x_scale is not None
        zp = g.const(128, "uint8")
        xq = g.op("QuantizeLinear", x, x_scale, zp, hint=f"{hint}.xq")
        s = x_scale
    acc = kernel(xq, zp)
    rescale = g.op("Mul", s, w_scale, hint=f"{hint}.rescale")
    return g.op("Mul", g.op("Cast", acc, to=TensorProto.FLOAT), rescale, hint=f"{hint}.y")


def chain_links(graph: Graph) -> dict[str, str]:
    """The static int8 chains of ``graph``: the output of each static ``qconv1d`` that is rendered
    as uint8 codes (and of the ``relu`` after it) -> the ``x_scale`` param of the conv reading them."""
    readers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for i in node.inputs:
            if i:
                readers.setdefault(i, []).append(node)
    outputs = {v for _, v in graph.outputs}

    def static_conv(n: Node) -> bool:
        return n.op == "qconv1d" and n.attr("act") == "static" and len(n.inputs) <= 5 and bool(n.inputs[4])

    links: dict[str, str] = {}
    for node in graph.nodes:
        y = node.outputs[0]
        if not static_conv(node) or y in outputs or len(readers.get(y, [])) != 1:
            continue
        relu = readers[y][0]
        r = relu.outputs[0]
        if relu.op != "relu" or r in outputs or len(readers.get(r, [])) != 1:
            continue
        nxt = readers[r][0]
        if static_conv(nxt) and nxt.attr("xrange") == "max" and nxt.inputs[0] == r and r not in nxt.inputs[1:]:
            links[y] = links[r] = nxt.inputs[4]
            continue
        tail = _rnn_tail_scale(r, readers, outputs)
        if tail is not None:  # only the conv: the relu (not linked) turns the codes back into float
            links[y] = tail
    return links


#: ops between a chain's last conv and a cell projection that only move values (per-tensor codes
#: survive them): a CRNN's [B, C, T] -> [B, T, C] transpose included
_SHAPE_OPS = ("squeeze", "unsqueeze", "reshape", "transpose")


def _rnn_tail_scale(v: str, readers: dict[str, list[Node]], outputs: set[str]) -> str | None:
    """The ``x_scale`` param (rnn input name) of the static cell projection that ``v`` reaches
    through shape ops only, if ``v``'s values are used for nothing else; else None."""
    while True:
        rs = readers.get(v, [])
        if v in outputs or len(rs) != 1:
            return None
        node = rs[0]
        if node.op not in _SHAPE_OPS:
            break
        if node.inputs[0] != v or v in node.inputs[1:]:
            return None
        v = node.outputs[0]
    if node.op != "rnn" or node.inputs[0] != v or v in node.inputs[1:]:
        return None
    attrs = node.attr_dict
    cells, dirs, _ = rnn_layout(attrs)
    if dirs != 1:
        return None
    step = cells[0].step
    x = step.input_names[0]
    uses = [n for n in step.nodes if x in n.inputs]
    if len(uses) != 1:
        return None
    q = uses[0]
    if q.op != "qlinear" or q.attr("act") != "static" or q.attr("xrange") != "max" or q.inputs[0] != x \
            or x in q.inputs[1:] or len(q.inputs) > 5 or len(q.inputs) < 5 or not q.inputs[4]:
        return None
    head = 2 + len(cells[0].states)
    for i, (layer, d, p) in enumerate(weight_slots(attrs)):
        if layer == 0 and d == 0 and p == q.inputs[4]:
            return node.inputs[head + i]
    return None


def _u8_input(g: OnnxGraph, x: str) -> bool:
    return x in g.u8_values


_float_relu = RENDERERS["relu"]


@renders("relu")
def _relu(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    """Inside a static chain the conv's uint8 codes (zero point 0) are already rectified; at a
    chain's tail (codes for a cell projection) they only go back to float."""
    if ins[0] and _u8_input(g, ins[0]):
        if node.outputs[0] in g.u8_links:
            return [ins[0]]
        return [g.op("DequantizeLinear", ins[0], g.u8_values[ins[0]], g.const(0, "uint8"), hint=node.outputs[0])]
    return _float_relu(g, node, ins, types)


def _int_to_float(g: OnnxGraph, xq: str, w_t: str, x_scale: str, w_scale: str, zp: str, bias: str | None,
                  hint: str) -> str:
    """``com.microsoft.MatMulIntegerToFloat``: the integer product, its rescale and the bias in one
    kernel (instead of MatMulInteger -> Cast -> Mul -> Add, four nodes each paid per call)."""
    return g.node("MatMulIntegerToFloat", [xq, w_t, x_scale, w_scale, zp, None, bias], f"{hint}.mm", 1,
                  domain=MS_DOMAIN)[0]


def _qdq_input(g: OnnxGraph, node: Node, x: str, act: str, x_scale: str | None, hint: str) -> str:
    """QDQ form of the op's input: ``DequantizeLinear(QuantizeLinear(x))`` at the calibrated scale
    (uint8, zero point 128: exactly the IR's symmetric int8 codes) for ``static``, ``x`` as is for
    weight-only.  Dynamic scales have no QDQ form an accelerator places: a clear error instead."""
    if act == "dynamic":
        raise UnsupportedError(f"{node.label} quantizes its input with per-call (dynamic) scales, which phone "
                               "accelerators do not run; quantize for the provider (rnnc quantize --for, or "
                               "static=True with no dynamic sites) so every activation scale is calibrated")
    if act == "none":
        return x
    assert x_scale is not None and g.emitter.qdq is not None
    zp = g.const(128, "uint8") if g.emitter.qdq[0] == "uint8" else g.const(0, "int8")
    return g.op("DequantizeLinear", g.op("QuantizeLinear", x, x_scale, zp, hint=f"{hint}.xq"), x_scale, zp,
                hint=f"{hint}.xdq")


def _qdq_weight(g: OnnxGraph, node: Node, ins: Ins, hint: str, axis: int) -> str:
    """``DequantizeLinear`` of the stored int8 weight with its per-output-channel scales (once per
    weight: in the main graph, where every step of an unrolled layer reads it)."""
    key = ("qdq", ins[1], ins[2], axis)
    return g.emitter.derived(key, lambda: _qdq_weight_node(g, node, ins, hint, axis))


def _qdq_weight_node(g: OnnxGraph, node: Node, ins: Ins, hint: str, axis: int) -> str:
    wq, ws = _weight(g, ins[1], "wq"), _weight(g, ins[2], "w_scale")
    if axis == 1:  # a linear's weight, laid out [in, out] for MatMul
        wq = np.ascontiguousarray(wq.T)
    if node.attr("bits", 8) != 8 or ws.ndim != 1:
        raise UnsupportedError(f"{node.label} has {node.attr('bits', 8)}-bit or group-wise weight scales; the "
                               "QDQ int8 that phone accelerators place has one int8 scale per output channel "
                               "(quantize with scheme w8a8 and no group8)")
    scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1).astype(np.float32))
    assert g.emitter.qdq is not None
    if g.emitter.qdq[1] == "uint8":  # the same codes shifted by 128 (QNN HTP takes uint8 weights)
        codes = g.emitter.initializer(f"{hint}.wq", np.ascontiguousarray((wq.astype(np.int16) + 128).astype(np.uint8)))
        zp = g.emitter.initializer(f"{hint}.w_zp", np.full(ws.size, 128, np.uint8))
        inputs = [codes, scale, zp]
    else:
        inputs = [g.emitter.initializer(f"{hint}.wq", np.ascontiguousarray(wq.astype(np.int8))), scale]
    out = g.emitter.fresh(f"{hint}.wdq")
    g.emitter.prelude.append(helper.make_node("DequantizeLinear", inputs, [out], name=g.emitter.fresh(f"n_{out}"),
                                              axis=axis))
    return out


def _qdq_linear(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    """A ``qlinear`` as QDQ around a float ``MatMul`` (``Emitter.qdq``): what NNAPI, QNN and
    XNNPACK turn into one int8 kernel.  The same numbers as the IR up to float summation order."""
    hint, act = node.outputs[0], node.attr("act")
    assert ins[0] is not None and types[0] is not None
    rest, kept = _split_keep(g, ins[0], ins, -1, types[0].rank, hint)
    w = _qdq_weight(g, node, ins, hint, axis=1)
    y = g.op("MatMul", _qdq_input(g, node, rest, act, ins[4], hint), w, hint=f"{hint}.mm")
    if kept is not None:
        kw = g.emitter.derived(("keep_w_t", ins[6]), lambda: g.emitter.initializer(
            f"{hint}.keep_w_t", np.ascontiguousarray(_weight(g, ins[6], "keep_w").T)))
        y = g.op("Add", y, g.op("MatMul", kept, kw), hint=f"{hint}.with_kept")
    return [g.op("Add", y, ins[3], hint=hint) if ins[3] else y]


def _qdq_conv1d(g: OnnxGraph, node: Node, ins: Ins, conv: dict) -> list[str]:
    """A ``qconv1d`` as QDQ around a float ``Conv`` (see :func:`_qdq_linear`)."""
    hint, act = node.outputs[0], node.attr("act")
    assert ins[0] is not None
    rest, kept = _split_keep(g, ins[0], ins, 1, 3, hint)
    w = _qdq_weight(g, node, ins, hint, axis=0)
    y = g.op("Conv", _qdq_input(g, node, rest, act, ins[4], hint), w, ins[3] if kept is None else None,
             hint=f"{hint}.conv" if kept is not None else hint, **conv)
    if kept is not None:
        y = g.op("Add", y, g.op("Conv", kept, ins[6], **{**conv, "group": 1}), hint=f"{hint}.with_kept")
        if ins[3]:
            y = g.op("Add", y, g.op("Unsqueeze", ins[3], g.const([1])), hint=hint)
    return [y]


@renders("qlinear")
def _qlinear(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    hint = node.outputs[0]
    act = node.attr("act")
    ins = [*ins, *([None] * (7 - len(ins)))]
    if g.emitter.qdq:
        return _qdq_linear(g, node, ins, types)
    x = ins[0]
    assert x is not None and types[0] is not None
    wq, ws = _weight(g, ins[1], "wq"), _weight(g, ins[2], "w_scale")
    rest, kept = _split_keep(g, x, ins, -1, types[0].rank, hint)
    bits = node.attr("bits", 8)
    if bits == 4 or (act == "none" and ws.ndim == 2):  # packed low-bit kernel (group-wise int8 too)
        if act == "static":
            bound = g.op("Mul", ins[4], g.const(127.0, "float32"))
            rest = g.op("Clip", rest, g.op("Neg", bound), bound)  # the calibrated (clipped) range
        y = _nbits(g, rest, wq, ws, bits, act, hint)
        if y is None:
            raise UnsupportedError(f"{node.label}: {wq.shape[1]} inputs fit no MatMulNBits block (16..256)")
    else:  # one scale per output channel; one copy per weight (an unrolled step reads it T times)
        w_t = g.emitter.derived(("wq_t", ins[1]), lambda: g.emitter.initializer(f"{hint}.wq_t",
                                                                                np.ascontiguousarray(wq.T)))
        w_scale = g.emitter.derived(("w_scale", ins[2]), lambda: g.emitter.initializer(
            f"{hint}.w_scale", ws.reshape(-1).astype(np.float32)))
        # the codes of a sequence-quantized cell input: its weight-only product is an integer one
        codes = g.emitter.seq_codes.get(x) if act == "none" and kept is None else None
        if act == "none" and codes is None:  # weight-only: stored int8, widened once (folded at load)
            y = g.op("MatMul", rest, g.emitter.widened(w_t, w_scale, hint), hint=f"{hint}.mm")
        elif act == "dynamic" and g.hoist_steps is not None:  # hoisted out of a Scan: one scale per step
            y = _per_step_dynamic(g, rest, wq, w_t, w_scale, hint)
        else:
            if codes is not None:
                xq, s, zp = codes
            elif act == "dynamic":
                xq, s, zp = g.node("DynamicQuantizeLinear", [rest], f"{hint}.xq", 3)
            else:  # symmetric int8 codes shifted by 128 into uint8 (onnxruntime's fast u8s8 path)
                zp = g.const(128, "uint8")
                xq, s = g.op("QuantizeLinear", rest, ins[4], zp, hint=f"{hint}.xq"), ins[4]
            bias = ins[3] if kept is None else None  # with kept channels the bias goes after their product
            y = _int_to_float(g, xq, w_t, s, w_scale, zp, bias, hint)
            if kept is None:
                return [y]
    if kept is not None:
        kw = g.emitter.derived(("keep_w_t", ins[6]), lambda: g.emitter.initializer(
            f"{hint}.keep_w_t", np.ascontiguousarray(_weight(g, ins[6], "keep_w").T)))
        y = g.op("Add", y, g.op("MatMul", kept, kw), hint=f"{hint}.with_kept")
    if ins[3]:
        y = g.op("Add", y, ins[3], hint=hint)
    return [y]


@renders("qconv1d")
def _qconv1d(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    hint = node.outputs[0]
    a = node.attr_dict
    act = a["act"]
    ins = [*ins, *([None] * (7 - len(ins)))]
    x = ins[0]
    assert x is not None
    ws = _weight(g, ins[2], "w_scale")
    conv = {"strides": [a["stride"]], "pads": [a["padding"]] * 2, "dilations": [a["dilation"]], "group": a["groups"]}
    if g.emitter.qdq:
        return _qdq_conv1d(g, node, ins, conv)
    links = g.u8_links
    if act == "static" and (hint in links or _u8_input(g, x)):
        return [_qlinear_conv(g, node, ins, ws, conv, links.get(hint), hint)]
    rest, kept = _split_keep(g, x, ins, 1, 3, hint)
    wq = _weight(g, ins[1], "wq")
    m = frames_of(types[0], wq.shape, a, g) if act == "none" and kept is None and ws.ndim == 1 else None
    if m is not None:  # an STFT-like front end (framed.py), its int8 codes stored side by side
        codes = g.emitter.initializer(f"{hint}.wq_cat", side_by_side(wq, a["stride"]))
        scale = g.emitter.initializer(f"{hint}.w_scale_cat", np.tile(ws.astype(np.float32), m))
        y = framed_conv(g, rest, g.emitter.widened(codes, scale, hint), wq.shape[0], m, a["stride"],
                        g.emitter.dim(types[0].shape[2]), hint)
    elif act == "none":  # weight-only: widened once (a DequantizeLinear here would be re-fused by ORT)
        scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1, 1, 1).astype(np.float32))
        w = g.emitter.widened(ins[1], scale, hint)
        y = g.op("Conv", rest, w, hint=f"{hint}.conv", **conv)
    else:
        w_scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1, 1).astype(np.float32))
        y = _integer(g, rest, act, ins[4],
                     lambda xq, zp: g.op("ConvInteger", xq, ins[1], zp, hint=f"{hint}.acc", **conv),
                     w_scale, hint)
    if kept is not None:
        y = g.op("Add", y, g.op("Conv", kept, ins[6], **{**conv, "group": 1}), hint=f"{hint}.with_kept")
    if ins[3]:
        y = g.op("Add", y, g.op("Unsqueeze", ins[3], g.const([1])), hint=hint)
    return [y]


def _qlinear_conv(g: OnnxGraph, node: Node, ins: Ins, ws: np.ndarray, conv: dict, next_scale: str | None,
                  hint: str) -> str:
    """A static ``qconv1d`` inside a chain as ``QLinearConv``: reads uint8 codes (the previous
    conv's, zero point 0, or ``x`` quantized here with the symmetric codes shifted by 128) and
    writes uint8 codes at ``next_scale`` for the next conv, or float at the chain's end."""
    x, x_scale = ins[0], ins[4]
    assert x is not None and x_scale is not None
    wq = _weight(g, ins[1], "wq")
    if _u8_input(g, x):
        xq, zp = x, g.const(0, "uint8")
    else:
        zp = g.const(128, "uint8")
        xq = g.op("QuantizeLinear", x, x_scale, zp, hint=f"{hint}.xq")
    if next_scale:
        w_scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1).astype(np.float32))
        w_zp = g.emitter.initializer(f"{hint}.w_zp", np.zeros(wq.shape[0], np.int8))
        bias = None
        if ins[3]:  # int32 at the accumulator's scale s_x * s_w (what QLinearConv adds before requantising)
            s_x = float(_weight(g, x_scale, "x_scale"))
            b = np.round(_weight(g, ins[3], "bias").astype(np.float64) / (s_x * ws.astype(np.float64)))
            bias = g.emitter.initializer(f"{hint}.bias_i32", np.clip(b, -2**31, 2**31 - 1).astype(np.int32))
        y = g.op("QLinearConv", xq, x_scale, zp, ins[1], w_scale, w_zp, next_scale, g.const(0, "uint8"), bias,
                 hint=f"{hint}.u8", **conv)
        g.u8_values[y] = next_scale  # the next conv's x_scale param, or at a tail the rnn's weight input
        return y
    acc = g.op("ConvInteger", xq, ins[1], zp, hint=f"{hint}.acc", **conv)  # the chain's end: back to float
    scale = g.emitter.initializer(f"{hint}.rescale", (float(_weight(g, x_scale, "x_scale")) * ws).reshape(-1, 1)
                                  .astype(np.float32))
    y = g.op("Mul", g.op("Cast", acc, to=TensorProto.FLOAT), scale, hint=f"{hint}.y")
    if ins[3]:
        y = g.op("Add", y, g.op("Unsqueeze", ins[3], g.const([1])), hint=hint)
    return y


def _per_step_dynamic(g: OnnxGraph, x: str, wq: np.ndarray, w_t: str, w_scale: str, hint: str) -> str:
    """A hoisted dynamic ``qlinear``: ``x`` is ``[T*B, I]``, every step's ``B`` rows quantized with
    that step's own ``DynamicQuantizeLinear`` parameters (range widened to 0, scale = range/255,
    zero point rounded half to even), exactly as the in-loop op would: a per-axis
    ``QuantizeLinear`` over ``[T, B, I]``, one ``MatMulInteger`` over all steps (zero point 0),
    then per step ``acc - zp_t * colsum(W)`` (int32, exact) times ``scale_t * w_scale``."""
    assert g.hoist_steps is not None
    f32 = "float32"
    k, n = wq.shape[1], wq.shape[0]
    x3 = g.op("Reshape", x, g.op("Concat", g.hoist_steps, g.const([-1, k]), axis=0), hint=f"{hint}.x_steps")

    def reduce(op: str) -> str:  # per step: [T]; axes became an input in opset 18
        if g.opset >= 18:
            return g.op(op, x3, g.const([1, 2]), keepdims=0)
        return g.op(op, x3, axes=[1, 2], keepdims=0)

    lo = g.op("Min", reduce("ReduceMin"), g.const(0.0, f32))
    scale = g.op("Div", g.op("Sub", g.op("Max", reduce("ReduceMax"), g.const(0.0, f32)), lo), g.const(255.0, f32))
    safe = g.op("Max", scale, g.const(np.finfo(np.float32).tiny, f32))  # an all-zero step: codes = zp = 0
    zp = g.op("Cast", g.op("Clip", g.op("Round", g.op("Div", g.op("Neg", lo), safe)), g.const(0.0, f32),
                           g.const(255.0, f32)), to=TensorProto.UINT8)
    xq = g.op("QuantizeLinear", x3, safe, zp, axis=0, hint=f"{hint}.xq_t")
    acc = g.op("MatMulInteger", xq, w_t, hint=f"{hint}.acc")  # [T, B, N] int32, codes against zero 0
    colsum = g.emitter.initializer(f"{hint}.colsum", wq.astype(np.int32).sum(axis=1).astype(np.int32))
    col = g.const([1, 2])
    zp_t = g.op("Unsqueeze", g.op("Cast", zp, to=TensorProto.INT32), col)
    acc = g.op("Sub", acc, g.op("Mul", zp_t, colsum))
    y = g.op("Mul", g.op("Cast", acc, to=TensorProto.FLOAT), g.op("Mul", g.op("Unsqueeze", scale, col), w_scale))
    rows = g.op("Slice", g.op("Shape", x), g.const([0]), g.const([-1]))
    return g.op("Reshape", y, g.op("Concat", rows, g.const([n]), axis=0), hint=f"{hint}.y")
