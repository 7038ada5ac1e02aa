"""EfficientNet-B0 (Tan & Le, 2019) and EfficientNet-Lite0, written out here because torchvision does
not import beside the CPU torch on these machines.

``EfficientNetB0`` is layer for layer the torchvision ``efficientnet_b0`` definition: with
``num_classes=1000`` it has exactly its 5,288,548 parameters. ``EfficientNetLite0`` is the same
network made for integer CPUs (Google's EfficientNet-Lite): no squeeze-excitation, ReLU6 instead of
swish; with ``num_classes=1000`` it has the 4,652,008 parameters of the published ImageNet checkpoint
(``export.pretrained`` converts that checkpoint). Both have the same layer names, so every Lite0
tensor is also a B0 tensor of the same shape: a B0 can start from Lite0's convolutions and batch norms.
"""
from __future__ import annotations

import torch
from torch import nn

from engines.contract import NORMALIZE_MEAN, NORMALIZE_STD

BN_EPS = 1e-3  # torchvision's EfficientNet uses eps=1e-3, momentum 0.1

# expand ratio, kernel, stride, in channels, out channels, repeats
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
FEATURES = 1280


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.SiLU, eps: float = BN_EPS) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
    ]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.SiLU, nn.ReLU, nn.ReLU6, nn.Hardswish) else act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int, act: type[nn.Module] = nn.SiLU,
                 gate: type[nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = act()
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class StochasticDepth(nn.Module):
    """Drops the residual branch per sample in training (row mode, as torchvision)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


class MBConv(nn.Module):
    """Inverted residual block. Without squeeze-excitation (``se=False``) an ``nn.Identity`` keeps its
    place, so the projection keeps the same parameter name with and without it."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, drop: float,
                 act: type[nn.Module] = nn.SiLU, se: bool = True) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(cin, hidden, 1, act=act))
        layers += [
            conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=act),
            SqueezeExcitation(hidden, max(1, cin // 4)) if se else nn.Identity(),
            conv_bn_act(hidden, cout, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.drop = StochasticDepth(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + self.drop(y) if self.residual else y


class EfficientNet(nn.Module):
    """B0-sized backbone returning pooled ``[N, 1280]`` features; a 1000-way classifier only if asked.

    ``input_mean`` / ``input_std`` (0..255 scale, per RGB channel) are the input normalisation the
    weights expect; :class:`~engines.architectures.aqs_net.AQSNet` applies them inside the graph.
    """

    out_features = FEATURES
    act: type[nn.Module] = nn.SiLU
    se = True
    input_mean = tuple(255.0 * m for m in NORMALIZE_MEAN)  # ImageNet, as torchvision
    input_std = tuple(255.0 * s for s in NORMALIZE_STD)

    def __init__(self, num_classes: int | None = None, stochastic_depth: float = 0.2, dropout: float = 0.2) -> None:
        super().__init__()
        total = sum(stage[5] for stage in B0_STAGES)
        layers: list[nn.Module] = [conv_bn_act(3, 32, 3, 2, act=self.act)]
        index = 0
        for expand, kernel, stride, cin, cout, repeats in B0_STAGES:
            stage = []
            for r in range(repeats):
                stage.append(MBConv(expand, kernel, stride if r == 0 else 1, cin if r == 0 else cout, cout,
                                    stochastic_depth * index / total, act=self.act, se=self.se))
                index += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_bn_act(B0_STAGES[-1][4], FEATURES, 1, act=self.act))
        self.features = nn.Sequential(*layers)
        self.classifier = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURES, num_classes)) if num_classes else None
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.classifier(x) if self.classifier is not None else x


class EfficientNetB0(EfficientNet):
    """EfficientNet-B0: squeeze-excitation and swish (torchvision's ``efficientnet_b0``)."""


class EfficientNetLite0(EfficientNet):
    """EfficientNet-Lite0: B0 without squeeze-excitation, with ReLU6; input scaled as (x - 127) / 128,
    as the published ImageNet checkpoint was trained."""

    act = nn.ReLU6
    se = False
    input_mean = (127.0, 127.0, 127.0)
    input_std = (128.0, 128.0, 128.0)


def init_weights(module: nn.Module) -> None:
    """torchvision's initialisation: kaiming-normal convs, unit BN, small uniform linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.out_features ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
