"""MobileNetV3-small (Howard et al., 2019), layer for layer torchvision's ``mobilenet_v3_small``:
with ``num_classes=1000`` it has exactly its 2,542,856 parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from engines.architectures.efficientnet import EfficientNet, SqueezeExcitation, conv_bn_act, init_weights

BN_EPS = 1e-3

# in, kernel, expanded, out, squeeze-excitation, activation ("RE" relu / "HS" hardswish), stride
SMALL_BLOCKS: tuple[tuple[int, int, int, int, bool, str, int], ...] = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
FEATURES = 576
CLASSIFIER_HIDDEN = 1024


def make_divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, hidden: int, cout: int, se: bool, act: str, stride: int) -> None:
        super().__init__()
        activation = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn_act(cin, hidden, 1, act=activation))
        layers.append(conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=activation))
        if se:
            layers.append(SqueezeExcitation(hidden, make_divisible(hidden // 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(conv_bn_act(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Small(nn.Module):
    """Backbone returning pooled ``[N, 576]`` features; torchvision's classifier only if asked."""

    out_features = FEATURES
    input_mean, input_std = EfficientNet.input_mean, EfficientNet.input_std

    def __init__(self, num_classes: int | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [InvertedResidual(*block) for block in SMALL_BLOCKS]
        layers.append(conv_bn_act(SMALL_BLOCKS[-1][3], FEATURES, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = (
            nn.Sequential(
                nn.Linear(FEATURES, CLASSIFIER_HIDDEN), nn.Hardswish(inplace=True), nn.Dropout(dropout),
                nn.Linear(CLASSIFIER_HIDDEN, num_classes),
            )
            if num_classes
            else None
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.classifier(x) if self.classifier is not None else x
