"""EfficientNet-B0 (Tan & Le, 2019), written out here because torchvision does not import beside
the CPU torch on these machines. Layer for layer the torchvision ``efficientnet_b0`` definition:
with ``num_classes=1000`` it has exactly its 5,288,548 parameters.
"""
from __future__ import annotations

import torch
from torch import nn

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
        layers.append(act(inplace=True) if act in (nn.SiLU, nn.ReLU, nn.Hardswish) else act())
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
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, drop: float) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(cin, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcitation(hidden, max(1, cin // 4)),
            conv_bn_act(hidden, cout, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.drop = StochasticDepth(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + self.drop(y) if self.residual else y


class EfficientNetB0(nn.Module):
    """Backbone returning pooled ``[N, 1280]`` features; a 1000-way classifier only if asked."""

    out_features = FEATURES

    def __init__(self, num_classes: int | None = None, stochastic_depth: float = 0.2, dropout: float = 0.2) -> None:
        super().__init__()
        total = sum(stage[5] for stage in B0_STAGES)
        layers: list[nn.Module] = [conv_bn_act(3, 32, 3, 2)]
        index = 0
        for expand, kernel, stride, cin, cout, repeats in B0_STAGES:
            stage = []
            for r in range(repeats):
                stage.append(MBConv(expand, kernel, stride if r == 0 else 1, cin if r == 0 else cout, cout,
                                    stochastic_depth * index / total))
                index += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_bn_act(B0_STAGES[-1][4], FEATURES, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURES, num_classes)) if num_classes else None
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).mean((2, 3))
        return self.classifier(x) if self.classifier is not None else x


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
