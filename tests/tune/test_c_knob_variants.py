"""The C tuner searches the kernel's own knobs (time chunk, batch rows, tile) beside the solver's
tilings, starting from the untuned default; each variant renders as given and computes what the
IR interpreter computes."""

from __future__ import annotations

import torch

from rnnc.backends.cstyle import compile_program
from rnnc.lower.knobs import cpu_knobs, knobs_for
from rnnc.targets import get
from rnnc.tolerances import assert_close
from rnnc.tune import cell_layers
from rnnc.tune.adapt_c import ADAPTER


def test_variants_span_each_knob_and_render_as_given():
    host = get("cpu/host")
    layer = cell_layers("lstm", 8, 32, batch=4, seq_len=70)[0]
    variants = ADAPTER.knob_variants(layer, host)
    default = cpu_knobs(32, 4, host, "float32")
    chunks = {v.param("time_chunk") for v in variants}
    assert 64 in chunks and 128 not in chunks  # no chunk longer than the sequence
    assert {v.param("batch_block") for v in variants} >= {1, 2, 4}
    assert all(v.kernel == "cpu_knobs" for v in variants)
    first = variants[0]  # one knob changed from the default
    changed = [k for k in ("time_chunk", "batch_block", "tile_hidden") if first.param(k) != getattr(default, k)]
    assert len(changed) == 1
    kn = knobs_for(32, 4, host, first)
    assert (kn.time_chunk, kn.batch_block, kn.tile_hidden) == tuple(
        first.param(k) for k in ("time_chunk", "batch_block", "tile_hidden"))


def test_every_variant_matches_the_interpreter():
    host = get("cpu/host")
    layer = cell_layers("gru", 8, 32, batch=3, seq_len=40)[0]
    program = layer.program()
    x = torch.randn(3, 40, 8, generator=torch.Generator().manual_seed(2))
    want = program.run(x)
    for sched in ADAPTER.knob_variants(layer, host)[:6]:
        got = compile_program(program, host, sched)(x)
        assert_close(got[0], want[0], "float32", "c", f"knobs {dict(sched.params)}")


def test_int8_layers_search_both_ways_of_feeding_codes():
    """A weight-only int8 layer's variants try the other ``widen_codes`` choice than the untuned
    default (streamed codes vs widened once at packing), and both compute what the quantized IR
    means; float layers have no such knob to try."""
    import rnnc
    from rnnc.ir import rnn_program
    from rnnc.kernels import CELLS
    from rnnc.tune import layers_of

    host = get("cpu/host")
    mod = CELLS["lstm"].load_module_class()(8, 32)
    cell, weights = mod.rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    calib = [torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(s)) for s in range(2)]
    q = rnnc.quantize(prog, calib, scheme="w8", progress=False).program
    layer = layers_of(q, 2, 10)[0]
    default = cpu_knobs(32, 4, host, "float32", int8_weights=True).widen_codes
    others = [v for v in ADAPTER.knob_variants(layer, host) if v.param("widen_codes") != default]
    assert others
    # the other choice is also tried with the batch rows its tile takes (streamed codes: fewer)
    from rnnc.lower.knobs import batch_rows

    rows = batch_rows(host.cpu, 4, cpu_knobs(32, 4, host, "float32").tile_hidden, streamed=not default)
    assert any(v.param("batch_block") == rows for v in others)
    x = torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(3))
    want = q.run(x)
    for sched in (ADAPTER.knob_variants(layer, host)[0], others[0]):
        assert_close(compile_program(q, host, sched)(x)[0], want[0], "float32", "c", f"knobs {dict(sched.params)}")
    float_layer = layers_of(prog, 2, 10)[0]
    assert all(v.param("widen_codes") in (None, 0) for v in ADAPTER.knob_variants(float_layer, host))
