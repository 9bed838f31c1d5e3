"""Data-free calibration from BatchNorm statistics (tqx.calibrate_from_batchnorm)."""
import warnings

import pytest
import torch
from torch import nn

import torchquantx as tqx
from torchquantx.data import MEAN, STD, load_fashion_mnist
from torchquantx.models import load_reference


class Block(nn.Module):
    """conv-bn-relu, conv-bn (no activation), a residual add, then a linear head without BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(self.conv1(x)))
        b = self.bn2(self.conv2(a))
        return self.fc(torch.relu(a + b).mean((2, 3)))


def make_block() -> Block:
    torch.manual_seed(0)
    m = Block()
    for bn in (m.bn1, m.bn2):
        bn.weight.data = torch.randn(4)  # some negative gammas: the range uses |gamma|
        bn.bias.data = torch.randn(4)
    return m.eval()


def observed_range(prepared, place: str):
    for _, where, obs in tqx.calibration.observers(prepared):
        if where == place:
            return float(obs.min_val()[0]), float(obs.max_val()[0])
    raise AssertionError(f"no observer at {place}")


def test_ranges_follow_beta_and_gamma():
    m = make_block()
    p = tqx.prepare(m, "onednn")
    names = tqx.calibrate_from_batchnorm(p, n=4.0, input_range=(-1.0, 2.0))
    assert len(names) == len(tqx.calibration.observers(p))  # every value reached
    g1, b1 = m.bn1.weight.detach().abs(), m.bn1.bias.detach()
    g2, b2 = m.bn2.weight.detach().abs(), m.bn2.bias.detach()
    lo1, hi1 = max(0.0, float((b1 - 4 * g1).min())), float((b1 + 4 * g1).max())  # relu clips
    lo2, hi2 = float((b2 - 4 * g2).min()), float((b2 + 4 * g2).max())
    obs = [(where, (float(o.min_val()[0]), float(o.max_val()[0]))) for _, where, o in tqx.calibration.observers(p)]
    assert [w for w, _ in obs] == ["input 'x'", "<top> (aten::relu)", "conv2 (aten::conv2d)", "<top> (aten::relu)",
                                   "fc (aten::linear)"]
    assert obs[0][1] == pytest.approx((-1.0, 2.0))
    assert obs[1][1] == pytest.approx((lo1, hi1), rel=1e-5, abs=1e-6)  # conv1 + bn1 + relu
    assert obs[2][1] == pytest.approx((lo2, hi2), rel=1e-5, abs=1e-6)  # conv2 + bn2, no activation


def test_interval_arithmetic_after_the_residual_add():
    m = make_block()
    p = tqx.prepare(m, "onednn")
    tqx.calibrate_from_batchnorm(p, n=4.0, input_range=(-1.0, 2.0))
    ranges = {where: (float(o.min_val()[0]), float(o.max_val()[0])) for _, where, o in tqx.calibration.observers(p)}
    g1, b1 = m.bn1.weight.detach().abs(), m.bn1.bias.detach()
    g2, b2 = m.bn2.weight.detach().abs(), m.bn2.bias.detach()
    a = (max(0.0, float((b1 - 4 * g1).min())), float((b1 + 4 * g1).max()))
    b = (float((b2 - 4 * g2).min()), float((b2 + 4 * g2).max()))
    # relu(a + b): the add's range is the sum of the ranges, then the relu clips it at 0.
    expected = (max(0.0, a[0] + b[0]), a[1] + b[1])
    assert any(r == pytest.approx(expected, rel=1e-5, abs=1e-6) for r in ranges.values()), ranges
    q = tqx.convert(p)
    x = torch.rand(2, 3, 8, 8) * 3 - 1
    with torch.no_grad():
        ref, out = m(x), q(x)
    assert torch.isfinite(out).all() and ((ref - out).norm() / ref.norm()) < 0.3


@pytest.mark.parametrize("name", ["mobilenet", "resnet"])
def test_data_free_accuracy_on_reference_models(name):
    warnings.simplefilter("ignore")
    x, y = load_fashion_mnist("test")
    x, y = x[:2000], y[:2000]
    m = load_reference(name)
    p = tqx.prepare(m, "onednn")
    tqx.calibrate_from_batchnorm(p, input_range=((0 - MEAN) / STD, (1 - MEAN) / STD))
    q = tqx.convert(p)
    with torch.no_grad():
        fp32 = (m(x).argmax(1) == y).float().mean().item() * 100
        int8 = (q(x).argmax(1) == y).float().mean().item() * 100
    assert int8 > fp32 - 1.0, f"{name}: data-free int8 {int8:.2f} % vs fp32 {fp32:.2f} %"


def test_errors():
    no_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with pytest.raises(RuntimeError, match="has no BatchNorm statistics"):
        tqx.calibrate_from_batchnorm(tqx.prepare(no_bn))
    p = tqx.prepare(make_block())
    with pytest.raises(ValueError, match=r"input_range should be \(lo, hi\) with lo <= hi, got \(2.0, 1.0\)"):
        tqx.calibrate_from_batchnorm(p, input_range=(2.0, 1.0))
    with pytest.raises(RuntimeError, match="n should be > 0, got -1"):
        tqx.calibrate_from_batchnorm(p, n=-1.0)
    with pytest.raises(TypeError, match="pass the module returned by torchquantx.prepare"):
        tqx.calibrate_from_batchnorm(make_block())
