"""Models shared by bench/coverage.py and tests/python/test_models.py: shapes torchvision lacks
(data-dependent control flow, ops outside the op registry, lists built in loops)."""
from __future__ import annotations

from typing import List

import torch
from torch import nn


def set_bn_stats(model: nn.Module, batches: List[torch.Tensor]) -> nn.Module:
    """Realistic BatchNorm running statistics: cumulative average over `batches` in train mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    return model.eval()


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ControlFlowNet(nn.Module):
    """`if x.sum() > 0` on the input's values, a for loop over a ModuleList (unrolled by
    TorchScript), and a loop whose trip count is the batch size (a real prim::Loop)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, 16, 2)
        self.blocks = nn.ModuleList([ConvBNReLU(16, 16) for _ in range(3)])
        self.positive = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.negative = nn.Sequential(nn.Conv2d(16, 32, 1, 2), nn.BatchNorm2d(32), nn.Hardswish())
        self.refine = ConvBNReLU(32, 32)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        for block in self.blocks:
            y = y + block(y)
        if x.sum() > 0:
            y = self.positive(y)
        else:
            y = self.negative(y)
        for _ in range(x.size(0)):
            y = y + self.refine(y)
        y = torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)
        return self.head(y)


class LoopListCatNet(nn.Module):
    """Per-sample heads appended to a list in a loop, then concatenated. With start_with_first the
    list starts as [head(sample 0)] and the loop appends the rest."""

    def __init__(self, start_with_first: bool = False, num_classes: int = 10) -> None:
        super().__init__()
        self.start_with_first = start_with_first
        self.stem = ConvBNReLU(3, 16, 2)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.flatten(nn.functional.adaptive_avg_pool2d(self.stem(x), 1), 1)
        if self.start_with_first:
            outs: List[torch.Tensor] = [self.head(y[0:1])]
            start = 1
        else:
            outs = []
            start = 0
        for i in range(start, y.size(0)):
            outs.append(self.head(y[i:i + 1]))
        return torch.cat(outs, 0)


class PreluGeluLnSoftmaxNet(nn.Module):
    """A CNN with PReLU, GELU, LayerNorm and softmax in the middle (ops outside the op registry)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.prelu = nn.PReLU(16)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1)
        self.gelu = nn.GELU()
        self.norm = nn.LayerNorm(32)
        self.attn = nn.Conv2d(32, 32, 1)
        self.conv3 = nn.Conv2d(32, 64, 3, 2, 1)
        self.bn3 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.gelu(self.conv2(x))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        a = torch.softmax(self.attn(x), dim=1)
        x = x * a
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)
