"""Weight-only int8 (``qlinear`` with ``act="none"``) in the C backend vs the quantized IR interpreter.

The reference is ``q.program.run`` (the interpreter of the quantized Program), not the float
model: the C kernel must compute what the quantized IR means, and it must really carry int8
weights (the memory traffic of the recurrence is the point), which the tests read off the source.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from cstyle_cases import INPUT, module

import rnnc
from rnnc.backends.cstyle import C_BACKEND, compile_program
from rnnc.constraints import Schedule
from rnnc.errors import UnsupportedError
from rnnc.ir import rnn_program
from rnnc.ir.rnn import rnn_layout
from rnnc.lower.knobs import CPU_KNOBS_KERNEL
from rnnc.lower.layer import lower_layer
from rnnc.tolerances import assert_close


def _calib(features: int, seed: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 6, features, generator=g) for _ in range(3)]


def _quantized_cell_program(name: str, hidden: int = 16, scheme: str = "w8", **options: Any) -> Any:
    cell, weights = module(name, hidden).rnnc_layer()
    prog = rnn_program([cell], [[weights]], with_states=True)
    return rnnc.quantize(prog, _calib(INPUT), scheme=scheme, progress=False, **options)


def _codes(widen: int) -> Schedule:
    """C knobs that stream the int8 codes (0) or widen them to floats once at packing (1)."""
    return Schedule(kernel=CPU_KNOBS_KERNEL, cell="", target="cpu/host", problem=(), params=(("widen_codes", widen),))


def _compare(q: Any, *inputs: Any, force_generic: bool = False, widen: int | None = None) -> Any:
    schedule = None if widen is None else _codes(widen)
    compiled = compile_program(q.program, "cpu/host", schedule, force_generic=force_generic)
    got, want = compiled(*inputs), q.program.run(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close(g, w, "float32", "c", f"output {i} vs the quantized interpreter")
    return compiled


def _assert_int8_weights(compiled: Any, recurrent: bool = True) -> None:
    """Every quantized weight (``*.q``) reaches the kernel as ``signed char``, none as float."""
    src = "\n".join(compiled.sources.values())
    decls = [line for line in src.splitlines() if "bufs[" in line and "_q_" in line]
    assert decls and all("signed char*" in d for d in decls), decls
    if recurrent:  # torch-style gate cells: both GEMMs' weights
        assert any("weight_ih_q" in d for d in decls), "input weight codes are not an int8 buffer"
        assert any("weight_hh_q" in d for d in decls), "recurrent weight codes are not an int8 buffer"


def _has_qlinear(program: Any) -> bool:
    cells = rnn_layout(program.rnn_nodes()[0].attr_dict)[0]
    return any(n.op == "qlinear" for c in cells for n in c.step.nodes)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "mingru"])
@pytest.mark.parametrize(("force_generic", "widen"), [(False, 0), (False, 1), (True, None)])
def test_w8_cell_matches_quantized_interpreter(name: str, force_generic: bool, widen: int | None) -> None:
    q = _quantized_cell_program(name)
    assert _has_qlinear(q.program)
    cell = rnn_layout(q.program.rnn_nodes()[0].attr_dict)[0][0]
    for batch in (1, 3, 4):  # single rows, a remainder and a full block of the fused tiles
        x = torch.randn(batch, 9, INPUT, generator=torch.Generator().manual_seed(5))
        init = [torch.randn(1, batch, *s.shape, generator=torch.Generator().manual_seed(6)) * 0.5
                for s in cell.states]
        compiled = _compare(q, x, *init, force_generic=force_generic, widen=widen)
    _assert_int8_weights(compiled, recurrent=name != "mingru")
    paths = {b.kernel.meta["path"] for b in compiled.builds.values()}
    if force_generic:
        assert paths == {"generic"}
    elif name in ("lstm", "gru", "elman"):
        assert paths == {"fused"}, "weight-only per-channel qlinear gate cells should take the fused path"


def test_kernel_declares_int8_parameter_buffers() -> None:
    q = _quantized_cell_program("lstm")
    cell = rnn_layout(q.program.rnn_nodes()[0].attr_dict)[0][0]
    for force_generic, widen in ((False, 0), (False, 1), (True, 0)):
        kernel = lower_layer(cell, None, _codes(widen), force_generic=force_generic)
        kinds = {b.name: b.dtype for b in kernel.buffers}
        assert kinds["p_weight_hh.q"] == "int8" and kinds["p_weight_hh.scale"] == "param"
        if not force_generic:  # packed copies of the codes stay int8, unless widened once at packing
            assert {d for n, d in kinds.items() if n.startswith("w_")} == {"param" if widen else "int8"}


def test_groupwise_int4_and_multilayer_bidirectional_with_lengths() -> None:
    """Group-wise scales (``w_scale [out, groups]``) take the generic path; lengths, reverse
    directions and a second layer go through the same runtime as float kernels."""
    torch.manual_seed(0)
    net = torch.nn.GRU(32, 32, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(4, 9, 32, generator=torch.Generator().manual_seed(1))
    prog = rnnc.trace(net, (x,))
    q = rnnc.quantize(prog, _calib(32), scheme="w4", group=16, progress=False)
    cells = rnn_layout(q.program.rnn_nodes()[0].attr_dict)[0]
    assert dict(cells[0].step.params)["weight_hh.scale"].rank == 2
    compiled = _compare(q, x)
    _assert_int8_weights(compiled)
    assert {b.kernel.meta["path"] for b in compiled.builds.values()} == {"generic"}
    q8 = rnnc.quantize(prog, _calib(32), scheme="w8", progress=False)
    _compare(q8, x)


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("outliers,act", [("none", "dynamic"), ("clip", "static")])
def test_int8_activations_are_declined_with_a_reason(name: str, outliers: str, act: str) -> None:
    q = _quantized_cell_program(name, scheme="w8a8", outliers=outliers)
    ok, why = C_BACKEND.supports(q.program, "cpu/host")
    assert not ok
    # a dynamic LSTM input is quantized per sequence (cell attr xquant): declined at the cell
    seq = (name, act) == ("lstm", "dynamic")
    reason = "int8 input activations (xquant='sequence')" if seq else f"act={act!r}"
    assert reason in why and "w8" in why
    with pytest.raises(UnsupportedError, match="qlinear|int8 input activations"):
        compile_program(q.program, "cpu/host")


def test_cuda_dialect_renders_int8_codes() -> None:
    """The CUDA rendering of the same nest keeps the codes int8 (half storage for the rest)."""
    from rnnc.backends.cstyle.dialects import CudaDialect

    q = _quantized_cell_program("gru")
    cell = rnn_layout(q.program.rnn_nodes()[0].attr_dict)[0][0]
    src = CudaDialect(lower_layer(cell, None, _codes(0), dtype="float16"), "float16").render()
    assert "const signed char*" in src and "((float)w_" in src


def test_w8_program_is_supported() -> None:
    assert C_BACKEND.supports(_quantized_cell_program("gru").program, "cpu/host") == (True, "")


def test_output_directory_round_trip(tmp_path: Any) -> None:
    """``compile_to_dir`` + ``load`` (what ``rnnc compile --backend c`` ships) keep int8 weights."""
    from rnnc.backends.cstyle.artifact import compile_to_dir, load

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    q = rnnc.quantize(rnnc.trace(torch.nn.LSTM(8, 16, batch_first=True), (x,)), _calib(8), scheme="w8",
                      progress=False)
    compile_to_dir(q.program, "cpu/host", "c", tmp_path)
    loaded = load(tmp_path)
    _assert_int8_weights(loaded)
    for i, (g, w) in enumerate(zip(loaded(x), q.program.run(x), strict=True)):
        assert_close(g, w, "float32", "c", f"loaded output {i}")
