"""``scheme="auto"``: per-site precision searched under an accuracy budget, checked against a loss
computed here from the float and quantized Programs (not the search's own figure)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from quant_helpers import inputs, ort_run, traced
from test_quant_cli import MODEL

import rnnc
from rnnc.cli import main
from rnnc.errors import UserInputError
from rnnc.quant.auto import TREATMENTS, BudgetError
from rnnc.tolerances import assert_close


def _distortion(program, qprogram, x) -> float:
    with torch.no_grad():
        ref, got = program.run(x).double(), qprogram.run(x).double()
    return float((got - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def outlier_gru():
    return traced(50.0)[1]  # an outlier channel into the GRU: one site cannot take int8 activations


def test_auto_meets_the_budget_on_held_out_data(outlier_gru):
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(outlier_gru, calib, "auto", max_loss=0.01, measure=False, progress=False)
    chosen = q.auto.chosen
    assert chosen.loss <= 0.01
    assert _distortion(outlier_gru, q.program, calib[-1]) == pytest.approx(chosen.loss, rel=1e-6)
    assert _distortion(outlier_gru, q.program, inputs(seed=11)) < 0.03  # data the search never saw
    assert set(q.auto.sensitivity) == set(chosen.plan)
    plain = [t for t in q.auto.trials if set(t.plan.values()) == {"int8-static"} and t.recipe == "none"]
    assert plain and all(t.loss > 0.01 for t in plain)  # plain static w8a8 misses it: the search mattered
    assert {t.outliers for t in q.auto.trials} == set(TREATMENTS)  # treatments searched too
    assert {t.gptq for t in q.auto.trials} == {False, True}  # and the weights' rounding
    assert q.auto.speed.startswith("predicted") and q.auto.pareto() and "Pareto front" in q.auto.summary()


@pytest.mark.parametrize("fp32_ms", [0.5, 5.0])
def test_the_fastest_timed_candidate_wins_and_a_slower_than_float_result_is_said(outlier_gru, monkeypatch, fp32_ms):
    """Selection by onnxruntime timing, with the timing replaced by fixed numbers (the real one
    depends on the machine): the float model first, then the candidates in order."""
    import rnnc.quant.auto as auto

    def race(runs, budget_s=1.0):
        return [fp32_ms, *[3.0 + k for k in range(len(runs) - 2)], 1.0]  # the last candidate is fastest

    monkeypatch.setattr(auto, "_race", race)
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(outlier_gru, calib, "auto", max_loss=0.01, progress=False)
    timed = [t for t in q.auto.trials if t.latency_ms is not None]
    assert len(timed) >= 2 and all(t.loss <= 0.01 for t in timed) and q.auto.fp32_ms == fp32_ms
    assert q.auto.chosen.latency_ms == 1.0 == min(t.latency_ms for t in timed)
    assert _distortion(outlier_gru, q.program, calib[-1]) == pytest.approx(q.auto.chosen.loss, rel=1e-6)
    if fp32_ms < 1.0:
        assert "no plan within the budget runs faster than float" in q.auto.note and "0.500 ms" in q.auto.note
        assert "step by step in an ONNX Scan" in q.auto.note  # no fused int8 GRU kernel in onnxruntime
    else:
        assert q.auto.note == "" and "(5.00x)" in q.auto.summary()


def test_a_site_that_hurts_alone_is_the_one_stepped_down():
    program = traced(50.0)[1]
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(program, calib, "auto", "none", max_loss=0.01, measure=False, progress=False)
    worst = max(q.auto.sensitivity, key=q.auto.sensitivity.get)
    assert q.auto.chosen.plan[worst] != "int8-static" and q.auto.speed.startswith("predicted")
    assert {t.outliers for t in q.auto.trials} == {"none"}  # a fixed treatment is not searched


def test_a_tighter_budget_keeps_fewer_integer_sites(outlier_gru):
    calib = [inputs(seed=s) for s in range(4)]
    loose = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.05, measure=False, progress=False)
    tight = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.002, measure=False, progress=False)
    assert tight.auto.chosen.loss <= 0.002 < 0.05
    rank = {"int8-static": 0, "int8": 1, "weight-only": 2, "int4": 2, "fp16": 3, "float": 4}
    slowness = [sum(rank[v] for v in q.auto.chosen.plan.values()) for q in (tight, loose)]
    assert slowness[0] >= slowness[1]


def test_a_user_metric_and_an_impossible_budget(outlier_gru):
    calib = [inputs(seed=s) for s in range(4)]

    def argmax_flips(ref, out):  # the task's own metric: fraction of changed decisions
        return float((ref[0].argmax(-1) != out[0].argmax(-1)).float().mean())

    q = rnnc.quantize(outlier_gru, calib, "auto", max_loss=0.05, metric=argmax_flips, progress=False)
    assert q.auto.metric == "argmax_flips" and q.auto.chosen.loss <= 0.05
    with pytest.raises(BudgetError, match="no quantized plan meets relative L2 distortion <= 1e-09") as exc:
        rnnc.quantize(outlier_gru, calib, "auto", max_loss=1e-9, progress=False)
    assert exc.value.best_loss > 1e-9 and exc.value.plan
    with pytest.raises(UserInputError, match="holds out 1 calibration batch"):
        rnnc.quantize(outlier_gru, [inputs()], "auto", progress=False)


def test_cli_scheme_auto(tmp_path, capsys):
    (tmp_path / "net.py").write_text(MODEL)
    (tmp_path / "calib").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        x = rng.standard_normal((4, 10, 16)).astype(np.float32)
        np.savez(tmp_path / "calib" / f"b{i}.npz", x=x)
    out = tmp_path / "net.auto.onnx"
    argv = ["quantize", str(tmp_path / "net.py"), "--calib", str(tmp_path / "calib"), "--scheme", "auto",
            "--max-loss", "0.02", "-o", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["auto"]["chosen"]["loss"] <= 0.02 and out.is_file()
    assert main([*argv[:-3], "--max-loss", "1e-12", "-o", str(out)]) == 1  # nothing meets it: exit 1
    assert "no quantized plan meets" in capsys.readouterr().err


def test_equally_fast_candidates_are_decided_by_size_then_loss():
    """Timings within SAME_SPEED of the fastest are noise: the fewest bytes among them ship, then
    the least loss; a clearly faster plan still wins whatever its (in-budget) loss and size, unless
    none is clearly faster than float."""
    from rnnc.quant.auto import SAME_SPEED, Trial, _pick

    fast = Trial({"a": "int8"}, 0.009, 100, latency_ms=1.0)
    near = Trial({"a": "weight-only"}, 0.001, 100, latency_ms=1.0 + SAME_SPEED / 2)
    near_big = Trial({"a": "float"}, 0.0, 400, latency_ms=1.0 + SAME_SPEED / 4)
    assert _pick([fast, near, near_big], fp32_ms=2.0) is near
    slow = Trial({"a": "weight-only"}, 0.0, 50, latency_ms=1.0 + 2 * SAME_SPEED)
    assert _pick([fast, slow], fp32_ms=2.0) is fast
    # nothing materially faster than float: every plan at float speed is as fast as any other
    assert _pick([fast, slow], fp32_ms=1.0 + SAME_SPEED) is slow
    # something is: only plans materially faster than float qualify, however small the others
    a = Trial({"a": "int8"}, 0.0, 100, latency_ms=0.94)
    b = Trial({"a": "weight-only"}, 0.0, 25, latency_ms=0.985)
    assert _pick([a, b], fp32_ms=1.0) is a


def test_a_nan_output_is_infinitely_far():
    from rnnc.quant.auto import relative_l2

    ref = [torch.ones(4)]
    assert relative_l2(ref, [torch.tensor([1.0, float("nan"), 1.0, 1.0])]) == float("inf")
    assert relative_l2(ref, [torch.tensor([1.0, 1.0, 1.0, 1.5])]) == pytest.approx(0.25)


def test_a_bidirectional_layer_is_one_site_for_both_directions(monkeypatch):
    """The rewrite quantizes a cell's site for every direction alike, so the search plans the two
    directions of a bidirectional GRU as one site (named by the forward weight), and the chosen
    plan's loss is what the quantized program really does."""
    import rnnc.quant.auto as auto

    class Bi(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = torch.nn.GRU(8, 32, batch_first=True, bidirectional=True), torch.nn.Linear(64, 4)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    model = Bi().eval()
    program = rnnc.trace(model, (inputs(),))
    monkeypatch.setattr(auto, "_race", lambda runs, budget_s=1.0: [1.0] * len(runs))
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(program, calib, "auto", "none", max_loss=0.02, gptq=False, progress=False)
    assert set(q.auto.sensitivity) == {"rnn.l0.fwd.weight_ih", "rnn.l0.fwd.weight_hh", "head.weight"}
    assert _distortion(program, q.program, calib[-1]) == pytest.approx(q.auto.chosen.loss, rel=1e-6)
    levels = {s.weight: (s.bits, s.act) for s in q.report.sites}
    for kind in ("weight_ih", "weight_hh"):  # both directions got what the plan says of the pair
        fwd, rev = levels.get(f"rnn.l0.fwd.{kind}"), levels.get(f"rnn.l0.rev.{kind}")
        assert fwd == rev


def test_dynamic_scales_are_a_candidate_beside_static_ones(monkeypatch):
    """Static activation scales rank first in the level order, yet onnxruntime fuses an LSTM layer
    into one DynamicQuantizeLSTM node only with dynamic ones: the all-dynamic variant of a plan
    within budget is timed too, and its export is that fused node."""
    import rnnc.quant.auto as auto
    from rnnc.backends.onnx.model import to_onnx
    from rnnc.backends.onnx.render import DEFAULT_OPSET

    class Lstm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = torch.nn.LSTM(8, 32, batch_first=True), torch.nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    program = rnnc.trace(Lstm().eval(), (inputs(),))
    monkeypatch.setattr(auto, "_race", lambda runs, budget_s=1.0: [1.0] * len(runs))
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(program, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False)
    timed = [t for t in q.auto.trials if t.latency_ms is not None]
    assert {t.gptq for t in q.auto.trials} == {False}  # the caller fixed the rounding
    dynamic = [t for t in timed if set(t.plan.values()) == {"int8"}]
    assert dynamic and any(set(t.plan.values()) == {"int8-static"} for t in timed)
    stats = auto.calibrate(program, auto.calibration_batches(program, calib[:-1]), progress=False)
    qprog, _ = auto.quantize_program(program, stats, auto._config(dynamic[0].plan, {}, dynamic[0].recipe))
    ops = [n.op_type for n in to_onnx(qprog, opset=DEFAULT_OPSET).graph.node]
    assert ops.count("DynamicQuantizeLSTM") == 1 and "LSTM" not in ops


def test_int4_shrinks_a_float_speed_plan_within_the_budget(outlier_gru, monkeypatch):
    """When nothing is faster than float (the timings here are made equal), size decides: weight-only
    sites step down to int4 while the loss stays within budget, and the smaller plan ships."""
    import rnnc.quant.auto as auto

    monkeypatch.setattr(auto, "_race", lambda runs, budget_s=1.0: [1.0] * len(runs))
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False)
    chosen = q.auto.chosen
    assert "int4" in chosen.plan.values() and chosen.loss <= 0.05
    assert _distortion(outlier_gru, q.program, calib[-1]) == pytest.approx(chosen.loss, rel=1e-6)
    int8_only = [t for t in q.auto.trials if t.latency_ms is not None and "int4" not in t.plan.values()]
    assert int8_only and chosen.q_bytes < min(t.q_bytes for t in int8_only)
    assert any(s.bits == 4 for s in q.report.sites)
    off = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False,
                        provider="xnnpack")  # a phone provider places int8 forms only: no int4 level
    assert all("int4" not in t.plan.values() for t in off.auto.trials)


def test_fp16_sites_where_int8_weights_break_a_tight_budget(outlier_gru, monkeypatch):
    """A budget int8 weight rounding cannot meet: the sites it breaks fall to fp16 (half the bytes)
    instead of fp32; the export stores them as float16 and computes what the search measured."""
    import rnnc.quant.auto as auto

    monkeypatch.setattr(auto, "_race", lambda runs, budget_s=1.0: [1.0] * len(runs))
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=3e-4, gptq=False, progress=False)
    chosen = q.auto.chosen
    assert "fp16" in chosen.plan.values() and chosen.loss <= 3e-4
    assert chosen.q_bytes < q.auto.fp32_bytes
    assert _distortion(outlier_gru, q.program, calib[-1]) == pytest.approx(chosen.loss, rel=1e-6)
    model = q.export_onnx()
    stored = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    assert stored and any(n.op_type == "Cast" and n.input[0] in stored for n in model.graph.node)
    x = inputs(seed=5)
    got = torch.from_numpy(ort_run(model, x)[0])
    assert_close(got, q.run(x), dtype="float32", backend="onnxruntime")


def test_a_prediction_never_picks_integer_layers_that_run_step_by_step(outlier_gru):
    """Without timing (another target), the target's data predicts the speed, and a plan whose
    export runs the integer layers as a per-step Scan (onnxruntime has no fused int8 GRU) ranks
    after every other, so the GRU's own sites keep float activations."""
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.05, gptq=False, measure=False,
                      progress=False)
    chosen = q.auto.chosen
    assert not chosen.stepwise and chosen.loss <= 0.05
    assert all(chosen.plan[s] not in ("int8-static", "int8") for s in chosen.plan if s.startswith("gru."))
    stepwise = [t for t in q.auto.trials if t.stepwise]
    assert any(t.int8_sites for t in stepwise)  # they were candidates, and lost


def test_per_sequence_scales_are_a_variant_unless_fixed(outlier_gru, monkeypatch):
    """Plans with dynamic integer sites are also tried with one input scale per sequence in every
    cell (``sequence_scale="all"``); a caller's ``sequence_scale`` fixes it and nothing else is tried."""
    import rnnc.quant.auto as auto

    monkeypatch.setattr(auto, "_race", lambda runs, budget_s=1.0: [1.0] * len(runs))
    calib = [inputs(seed=s) for s in range(4)]
    q = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False)
    seq = [t for t in q.auto.trials if t.sequence == "all"]
    assert seq and all(t.recipe.endswith("+seq-all") and "int8" in t.plan.values() for t in seq)
    config = auto._config(seq[0].plan, {}, seq[0].recipe)
    assert config.sequence_scale == "all" and not config.gptq and config.outliers == "none"
    fixed = rnnc.quantize(outlier_gru, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False,
                          sequence_scale="none")
    assert all(t.sequence == "" for t in fixed.auto.trials)
