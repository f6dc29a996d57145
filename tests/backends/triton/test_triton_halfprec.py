"""fp16/bf16 storage with fp32 arithmetic: every cell under the interpreter vs the fp32 reference
module run on the same rounded weights, inputs and initial states (tolerances: rnnc.tolerances).
fp16 LSTM/GRU at H=16 take the ``tl.dot`` path (batch tile 16, tile width 16)."""

from __future__ import annotations

import pytest
import torch
from triton_cases import FUSED, INPUT, SCAN, program, states

from rnnc.backends.triton import compile_program
from rnnc.backends.triton.render import use_dot
from rnnc.backends.triton.runtime import layer_kernel
from rnnc.tolerances import assert_close

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", [*FUSED, *SCAN])
def test_half_storage_matches_fp32_reference(name: str, dtype: str) -> None:
    prog, mods = program(name, 16, with_states=True, dtype=DTYPES[dtype])
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    x = torch.randn(4, 9, INPUT, generator=torch.Generator().manual_seed(11)).to(DTYPES[dtype])
    init = [s.to(DTYPES[dtype]) for s in states(cell, 1, 4)]
    got = compile_program(prog)(x, *init)
    assert all(g.dtype == DTYPES[dtype] for g in got)
    y_ref, s_ref = mods[0][0](x.float(), tuple(s[0].float() for s in init))
    assert_close(got[0].float().cpu(), y_ref, dtype, "triton", f"{name} {dtype} y vs fp32 reference")
    for g, r, what in zip(got[1:], s_ref, cell.state_names, strict=True):
        assert_close(g[0].float().cpu(), r, dtype, "triton", f"{name} {dtype} {what} vs fp32 reference")


def test_fp16_uses_tl_dot_where_shapes_allow() -> None:
    """The recurrent product is rendered as tl.dot for fp16 with 16-wide tiles, not for fp32/bf16
    or for tiles narrower than 16 (sLSTM H=16: 4-wide heads)."""
    for name, dtype, want in (("lstm", torch.float16, True), ("lstm", torch.float32, False),
                              ("lstm", torch.bfloat16, False), ("slstm", torch.float16, False)):
        cell = program(name, 16, dtype=dtype)[0].rnn_nodes()[0].attr("cells")[0]
        lk = layer_kernel(cell, batch_tile=16)
        assert use_dot(lk.plan, 16) is want and ("tl.dot(" in lk.source) is want, (name, dtype)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_half_torch_model_through_rnnc_compile(kind: str, dtype: str) -> None:
    """A torch LSTM/GRU cast to fp16/bf16 compiles through the public API for an H100 with the
    Triton backend (a GPU schedule for the example's batch) and matches the fp32 torch module on
    the same rounded weights and inputs."""
    import rnnc

    mods = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    torch.manual_seed(2)
    half = mods[kind](INPUT, 32, batch_first=True).to(DTYPES[dtype])
    ref = mods[kind](INPUT, 32, batch_first=True)
    ref.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    x = torch.randn(3, 10, INPUT).to(DTYPES[dtype])
    compiled = rnnc.compile(half, (x,), target="nvidia/h100-sxm", backend="triton", use_db=False, measure=False)
    got = compiled(x)
    with torch.no_grad():
        want = ref(x.float())
    assert got[0].dtype == DTYPES[dtype]
    assert_close(got[0].float().cpu(), want[0], dtype, "triton", f"{kind} {dtype} y vs fp32 torch")
    assert "no GPU here" in compiled.explain() or torch.cuda.is_available()


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_half_torch_model_directory_records_its_storage(dtype: str, tmp_path) -> None:  # noqa: ANN001
    """A torch GRU cast to 16 bits compiled to a Triton directory: the fused kernel is compiled
    (and its resources recorded) with 16-bit pointers, as it will run, the manifest names the
    storage, and ``rnnc.load`` runs it on 16-bit input."""
    import json

    import rnnc
    from rnnc.backends import get_backend

    torch.manual_seed(4)
    half = torch.nn.GRU(INPUT, 32, batch_first=True).to(DTYPES[dtype])
    ref = torch.nn.GRU(INPUT, 32, batch_first=True)
    ref.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    x = torch.randn(3, 7, INPUT).to(DTYPES[dtype])
    get_backend("triton").compile(rnnc.trace(half, (x,)), "nvidia/h100-sxm", str(tmp_path), batch=3)
    entry = next(iter(json.loads((tmp_path / "manifest.json").read_text())["layers"].values()))
    assert entry["knobs"]["storage"] == dtype
    assert entry["resources"] and all("error" not in r for r in entry["resources"].values()), entry["resources"]
    got = rnnc.load(str(tmp_path))(x)
    with torch.no_grad():
        want = ref(x.float())[0]
    assert got[0].dtype == DTYPES[dtype]
    assert_close(got[0].float().cpu(), want, dtype, "triton", f"{dtype} GRU loaded from a Triton directory")
