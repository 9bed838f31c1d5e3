"""Reference Fashion-MNIST models (1x28x28 in, 10 classes) with trained checkpoints, for quantization tests."""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

NUM_CLASSES = 10
CHECKPOINT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> List[nn.Module]:
    # No conv bias: BatchNorm follows and prepare() folds it into the conv.
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection; identity add when shapes match."""

    __constants__ = ["use_residual"]  # scripting keeps only the branch taken: no prim::If in the graph

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: List[nn.Module] = []
        if expand != 1:
            layers += _conv_bn(cin, hidden, 1) + [nn.ReLU6()]
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden) + [nn.ReLU6()]
        layers += _conv_bn(hidden, cout, 1)
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


# (expansion, output channels, blocks, stride of the first block) per stage, as in the MobileNetV2 paper.
MOBILENET_CONFIG = ((1, 16, 1, 2), (3, 24, 2, 1), (3, 48, 3, 2), (3, 64, 1, 1))


class FashionMobileNet(nn.Module):
    """MobileNetV2-style network for 28x28 grey images: stem at 28 pixels, blocks at 14 and 7, ReLU6, residual adds."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16, last_channels: int = 192,
                 config: Tuple[Tuple[int, int, int, int], ...] = MOBILENET_CONFIG) -> None:
        super().__init__()
        layers: List[nn.Module] = _conv_bn(1, width, 3) + [nn.ReLU6()]
        cin = width
        for expand, cout, blocks, stride in config:
            for i in range(blocks):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += _conv_bn(cin, last_channels, 1) + [nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs, identity (or 1x1 strided projection) added before the last ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.downsample = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*_conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class FashionResNet(nn.Module):
    """ResNet-style network for 28x28 grey images: stem at 28 pixels, stages at 14, 7 and 4 pixels."""

    def __init__(self, num_classes: int = NUM_CLASSES, widths: Tuple[int, ...] = (24, 48, 96)) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, widths[0], 3), nn.ReLU())
        stages: List[nn.Module] = []
        cin = widths[0]
        for cout in widths:
            stages.append(BasicBlock(cin, cout, 2))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


# name -> (constructor, checkpoint file in CHECKPOINT_DIR)
REFERENCE_MODELS: Dict[str, Tuple[Callable[[], nn.Module], str]] = {
    "mobilenet": (FashionMobileNet, "fashion_mobilenet.pt"),
    "resnet": (FashionResNet, "fashion_resnet.pt"),
}


def reference_names() -> List[str]:
    """Names load_reference() accepts."""
    return sorted(REFERENCE_MODELS)


def checkpoint_path(name: str) -> str:
    """Path of the state_dict checkpoint shipped for reference model ``name``."""
    return os.path.join(CHECKPOINT_DIR, _lookup(name)[1])


def load_reference(name: str, pretrained: bool = True) -> nn.Module:
    """The reference model ``name`` ('mobilenet' or 'resnet') in eval mode, with its trained weights by default."""
    constructor, _ = _lookup(name)
    model = constructor()
    if pretrained:
        path = checkpoint_path(name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"load_reference: no checkpoint for {name!r} at {path}; train one with "
                f"scripts/train_reference.py --model {name}, or pass pretrained=False")
        model.load_state_dict(torch.load(path, map_location="cpu"))
    return model.eval()


def _lookup(name: str) -> Tuple[Callable[[], nn.Module], str]:
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; valid names: {', '.join(reference_names())}")
    return REFERENCE_MODELS[name]
