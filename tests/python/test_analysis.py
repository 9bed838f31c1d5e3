"""Per-layer analysis, sensitivity and mixed precision (torchquantx.analysis)."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision

import torchquantx as tqx
from torchquantx.analysis import Analysis, _sqnr_of, analyze, quantize_to_target
from torchquantx.data import fashion_mnist_loader
from torchquantx.models import load_reference


@pytest.fixture(scope="module")
def fashion_batches():
    return [x for x, _ in list(fashion_mnist_loader(split="test", batch_size=64))[:3]]


def _break_range(prepared, attr: str) -> None:
    """Makes one observer's range absurdly narrow, as a bad qconfig or a calibration bug would."""
    obs = prepared._c.getattr(attr)
    obs.reset()
    obs.forward(torch.tensor([0.0, 0.05]))


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_broken_layer_ranked_first(name, fashion_batches):
    model = load_reference(name)
    prepared = tqx.prepare(model)
    tqx.calibrate(prepared, fashion_batches, progress=False)
    clean = analyze(prepared, fashion_batches, progress=False)
    # Break the observer of a layer that is not already the most sensitive one.
    victim = next(s for s in clean.layers[3:] if s.name != clean.sensitivity[0].name and s.op != "input")
    _break_range(prepared, victim.observer)
    broken = analyze(prepared, fashion_batches, progress=False)
    assert broken.sensitivity[0].name == victim.name
    worst_local = min(broken.layers, key=lambda s: s.local_sqnr)
    assert worst_local.observer == victim.observer
    row = next(s for s in broken.layers if s.observer == victim.observer)
    assert row.clipped > 0.2 and row.range[1] < 0.06
    assert broken.int8_metric < clean.int8_metric - 3


def test_analysis_fields_and_simulation_matches_convert(fashion_batches):
    model = load_reference("resnet")
    a = analyze(model, fashion_batches, progress=False, sensitivity=False)
    assert isinstance(a, Analysis) and a.sensitivity == []
    assert len(a.layers) == 15
    for s in a.layers:
        assert -1.0 <= s.cosine <= 1.0 + 1e-9
        assert s.range[0] <= 0.0 <= s.range[1]
        counts, lo, hi = s.histogram
        assert len(counts) == 64 and lo < hi and sum(counts) > 0
        if s.op != "input":  # weights quantized downstream of the input only
            assert math.isfinite(s.weight_only_sqnr)
        assert s.sqnr <= s.local_sqnr + 1e-6 or s.op == "input"
    # The simulation and the real converted model agree on the output to a fraction of a dB.
    note = a.notes[0]
    sim, real = (float(t.split(" dB")[0].split()[-1]) for t in note.split("is ")[1:3])
    assert abs(sim - real) < 1.5, note
    assert "SQNR" in a.table() and "layers.0.conv2" in a.table()
    assert a.to_dict()["layers"][0]["name"] == "input 'x'"


def test_prepared_model_is_not_modified(fashion_batches):
    prepared = tqx.prepare(load_reference("resnet"))
    tqx.calibrate(prepared, fashion_batches, progress=False)
    before_graph = str(prepared.graph)
    before = [prepared._c.getattr(f"_tqx_obs_{i}").calculate_qparams() for i in range(3)]
    x = fashion_batches[0]
    out = prepared(x)
    analyze(prepared, fashion_batches, progress=False)
    assert str(prepared.graph) == before_graph
    assert torch.equal(prepared(x), out)
    after = [prepared._c.getattr(f"_tqx_obs_{i}").calculate_qparams() for i in range(3)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(before, after))


def test_float_ops_have_boundary_costs(fashion_batches):
    a = analyze(load_reference("mobilenet"), fashion_batches, progress=False, sensitivity=False,
                skip=["features.3"])
    assert a.float_ops, a.table()
    assert all(f.name.startswith("features.3") for f in a.float_ops)
    assert sum(f.boundaries for f in a.float_ops) >= 2  # dequantize in, quantize out
    assert sum(f.boundary_ms for f in a.float_ops) > 0


def test_resnet18_broken_layer_ranked_first():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    batches = [torch.randn(2, 3, 64, 64) for _ in range(2)]
    prepared = tqx.prepare(model)
    tqx.calibrate(prepared, batches, progress=False)
    attr = next(a for a, place, _ in tqx.calibration.observers(prepared) if place.startswith("layer2.0.conv2 "))
    _break_range(prepared, attr)
    a = analyze(prepared, batches, progress=False)
    assert a.sensitivity[0].name == "layer2.0.conv2", [s.name for s in a.sensitivity[:5]]


def test_user_metric_and_its_errors(fashion_batches):
    labels_model = load_reference("resnet")
    with torch.no_grad():
        labels = [labels_model(x).argmax(1) for x in fashion_batches]

    def agreement(model) -> float:
        with torch.no_grad():
            return sum(float((model(x).argmax(1) == y).float().mean()) for x, y in zip(fashion_batches, labels))

    a = analyze(labels_model, fashion_batches, metric=agreement, progress=False)
    assert a.metric_name == "agreement" and a.float_metric == pytest.approx(len(fashion_batches))
    assert len(a.sensitivity) > 0

    def broken(model) -> float:
        raise KeyError("label")

    with pytest.raises(RuntimeError, match="metric 'broken' raised.*KeyError"):
        analyze(labels_model, fashion_batches, metric=broken, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        analyze(labels_model, [], progress=False)


def test_quantize_to_target_meets_a_strict_target_with_fewest_float_layers(fashion_batches):
    model = load_reference("mobilenet")
    prepared = tqx.prepare(model, "qnnpack")
    tqx.calibrate(prepared, fashion_batches, progress=False)
    all_int8 = analyze(prepared, fashion_batches, progress=False, sensitivity=False).int8_metric
    goal = all_int8 + 2.0  # full int8 misses it by 2 dB
    q, plan = quantize_to_target(model, fashion_batches, min_metric=goal, qconfig="qnnpack", candidates=4,
                                 timing_iters=3, progress=False)
    assert plan.met and plan.final_metric >= goal and plan.int8_metric < goal
    assert 1 <= len(plan.float_layers) <= 2, plan.describe()
    # Fewest: every layer of the plan is needed (pruning checked it on real converted models).
    for name in plan.float_layers:
        p = tqx.prepare(model, "qnnpack", skip=[n for n in plan.float_layers if n != name])
        tqx.calibrate(p, fashion_batches, progress=False)
        refs = [model(x) for x in fashion_batches]
        assert _sqnr_of(tqx.convert(p), [(x,) for x in fashion_batches], refs) < goal
    summary = tqx.summary(q, file=open("/dev/null", "w"))
    assert all(f"{n}" in summary for n in plan.float_layers)
    assert "float layers" in plan.describe()


def test_quantize_to_target_bad_input(fashion_batches):
    model = load_reference("resnet")
    with pytest.raises(ValueError, match="exactly one of max_drop"):
        quantize_to_target(model, fashion_batches, progress=False)
    with pytest.raises(ValueError, match="max_drop needs a metric"):
        quantize_to_target(model, fashion_batches, max_drop=0.5, progress=False)
    q, plan = quantize_to_target(model, fashion_batches, min_metric=-100.0, progress=False, timing_iters=2)
    assert plan.met and plan.float_layers == [] and plan.steps == []
