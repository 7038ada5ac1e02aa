"""The AQS network: a heavy per-frame backbone on a few key frames plus a light temporal branch
over all 7 frames, with three heads (quality, artifact logits, artifact intensities).

Why not the backbone on every frame: on 2 CPU cores the full EfficientNet-B0 on all 7 frames of
every window cannot keep up with 8 live 720p streams (issue 4). The backbone sees the key frames
(default: the middle one) - enough for spatial artifacts (blocking, ringing, noise, blur, banding,
saturation) - and the temporal branch sees the luma of all 7 fragment mosaics and their frame
differences, which is where judder (uneven steps, some ~0) and ghosting (faint copies of the
previous frame) show; both are invisible in a single frame.

Input: ``uint8`` ``[N, 7, 3, 224, 224]`` RGB (see :mod:`engines.contract`); the input normalisation
the backbone expects (ImageNet mean/std, or (x - 127) / 128 for Lite0) happens inside the model. Outputs: ``quality`` ``[N]`` (sigmoid), ``artifact_logits``
``[N, 10]``, ``intensity`` ``[N, 10]`` (sigmoid).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engines.architectures.statistics import NUM_STATISTICS, ClassicalStatistics
from engines.contract import (
    FRAGMENT_SIZE,
    NUM_ARTIFACTS,
    WINDOW_FRAMES,
)

DEFAULT_KEY_FRAMES: tuple[int, ...] = (WINDOW_FRAMES // 2,)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
TEMPORAL_CHANNELS = (16, 32, 64, 64)
DIFF_GAIN = 4.0  # frame differences are small: scale them towards unit range
STATISTICS_CLIP = 5.0  # standardised classical statistics are clipped to +-5, as in the classical engine
# 6 globally normalised step energies, 6 per-fragment normalised (averaged over fragments),
# their spread over fragments (6), and the log of the mean energy (1).
ENERGY_FEATURES = 3 * (WINDOW_FRAMES - 1) + 1
_EPS = 1e-3


class TemporalBranch(nn.Module):
    """Luma of the 7 mosaics and their 6 signed and absolute differences -> strided convs -> pooled,
    plus explicit per-step motion energy so uneven steps (judder) are easy to read.

    Luma and signed differences are one fixed linear map of the 21 input channels (a 1x1
    convolution with constant weights, so it runs as one fast kernel): channels 0..6 are
    ``Y_t - 0.5``, channels 7..12 are ``DIFF_GAIN * (Y_{t+1} - Y_t)``, with Y in 0..1.
    """

    def __init__(self, channels: Sequence[int] = TEMPORAL_CHANNELS) -> None:
        super().__init__()
        frames, steps = WINDOW_FRAMES, WINDOW_FRAMES - 1
        luma = torch.zeros(frames, frames * 3)
        for t in range(frames):
            luma[t, 3 * t : 3 * t + 3] = torch.tensor(LUMA_WEIGHTS) / 255.0
        diff = DIFF_GAIN * (luma[1:] - luma[:-1])
        self.register_buffer("mix_weight", torch.cat([luma, diff]).view(frames + steps, frames * 3, 1, 1),
                             persistent=False)
        self.register_buffer("mix_bias", torch.cat([torch.full((frames,), -0.5), torch.zeros(steps)]),
                             persistent=False)
        cin = frames + 2 * steps
        layers: list[nn.Module] = []
        for cout in channels:
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.Hardswish(inplace=True)]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.out_features = cin + ENERGY_FEATURES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float ``[N, 7, 3, H, W]`` in 0..255 -> ``[N, out_features]``."""
        return self.from_mixed(self.mix(x))

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float ``[N, 7, 3, H, W]`` in 0..255 -> luma and differences ``[N, 13, H, W]``."""
        return F.conv2d(x.flatten(1, 2), self.mix_weight, self.mix_bias)

    @staticmethod
    def frame_steps(mixed: torch.Tensor) -> torch.Tensor:
        """:meth:`mix`'s differences back on the 0..255 scale, ``Y[t+1] - Y[t]`` ``[N, 6, H, W]``."""
        return mixed[:, WINDOW_FRAMES:] * (255.0 / DIFF_GAIN)

    def from_mixed(self, mixed: torch.Tensor) -> torch.Tensor:
        absdiff = mixed[:, WINDOW_FRAMES:].abs()
        pooled = self.convs(torch.cat([mixed, absdiff], 1)).mean((2, 3))
        return torch.cat([pooled, motion_energy(absdiff * (1.0 / DIFF_GAIN))], 1)


def motion_energy(absdiff: torch.Tensor) -> torch.Tensor:
    """Per-step energy of ``|Y[t+1] - Y[t]|`` ``[N, 6, H, W]`` -> ``[N, ENERGY_FEATURES]``.

    H and W are whole numbers of fragments: 224 (the 7x7 mosaic) in use, smaller fragment-aligned
    crops of it in training (see ``export.train --crop-fragments``).
    """
    n, steps = absdiff.shape[0], absdiff.shape[1]
    rows, cols = absdiff.shape[2] // FRAGMENT_SIZE, absdiff.shape[3] // FRAGMENT_SIZE
    per_fragment = absdiff.reshape(n, steps, rows, FRAGMENT_SIZE, cols, FRAGMENT_SIZE).mean((3, 5))
    per_fragment = per_fragment.reshape(n, steps, rows * cols)  # [N, 6, fragments]
    total = per_fragment.mean(2)  # [N, 6]
    level = total.mean(1, keepdim=True)
    normalised = total / (level + _EPS)
    local = per_fragment / (per_fragment.mean(1, keepdim=True) + _EPS)  # each fragment over its own steps
    return torch.cat([normalised, local.mean(2), local.std(2), torch.log(level + _EPS)], 1)


class AQSNet(nn.Module):
    """Backbone on key frames + temporal branch (+ the classical statistics) + heads; the model
    contract's inputs and outputs.

    With ``statistics=True`` the trunk also reads the classical engine's hand-crafted features
    (:class:`ClassicalStatistics`), standardised by ``statistics_mean``/``statistics_scale``: buffers
    saved with the weights and set from training data by ``export.train.fit_statistics_scaling``.
    """

    def __init__(self, backbone: nn.Module, key_frames: Sequence[int] = DEFAULT_KEY_FRAMES,
                 hidden: int = 256, dropout: float = 0.2, statistics: bool = False) -> None:
        super().__init__()
        key_frames = tuple(int(k) for k in key_frames)
        if not key_frames or any(not 0 <= k < WINDOW_FRAMES for k in key_frames) or len(set(key_frames)) != len(key_frames):
            raise ValueError(f"key_frames must be distinct indices in 0..{WINDOW_FRAMES - 1}, got {key_frames}")
        self.key_frames = key_frames
        self.backbone = backbone
        self.temporal = TemporalBranch()
        # the input normalisation the backbone's weights expect, as one affine map of the 0..255 values
        mean, std = torch.tensor(backbone.input_mean), torch.tensor(backbone.input_std)
        self.register_buffer("scale", (1.0 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1), persistent=False)
        features = backbone.out_features + self.temporal.out_features
        self.statistics = ClassicalStatistics() if statistics else None
        if statistics:
            self.register_buffer("statistics_mean", torch.zeros(NUM_STATISTICS))
            self.register_buffer("statistics_scale", torch.ones(NUM_STATISTICS))
            features += NUM_STATISTICS
        self.trunk = nn.Sequential(nn.Linear(features, hidden), nn.Hardswish(inplace=True), nn.Dropout(dropout))
        self.quality_head = nn.Linear(hidden, 1)
        self.artifact_head = nn.Linear(hidden, NUM_ARTIFACTS)
        self.intensity_head = nn.Linear(hidden, NUM_ARTIFACTS)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.features(windows))

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """The trunk's input: backbone features of the key frames, the temporal branch's and, when
        the model has them, the standardised classical statistics."""
        x = windows.float()  # [N, 7, 3, H, W], 0..255
        mixed = self.temporal.mix(x)  # computed once: the statistics reuse its frame differences
        statistics = None if self.statistics is None else self.statistics(x, self.temporal.frame_steps(mixed))
        return self.trunk_input(self.learned_features(x, mixed), statistics)

    def trunk_input(self, learned: torch.Tensor, statistics: torch.Tensor | None) -> torch.Tensor:
        """Learned features, and the raw classical statistics standardised when the model reads them."""
        if self.statistics is None:
            return learned
        return torch.cat([learned, self.standardise(statistics)], 1)

    def standardise(self, statistics: torch.Tensor) -> torch.Tensor:
        """Raw classical statistics ``[N, NUM_STATISTICS]`` -> the trunk's clipped z-scores."""
        z = (statistics - self.statistics_mean) / self.statistics_scale
        return torch.where(torch.isnan(z), torch.zeros_like(z), z).clamp(-STATISTICS_CLIP, STATISTICS_CLIP)

    def learned_features(self, windows: torch.Tensor, mixed: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone features of the key frames and the temporal branch's (float windows, 0..255;
        ``mixed``: the temporal branch's :meth:`TemporalBranch.mix` of them, when already computed)."""
        x = windows.float()
        n = x.shape[0]
        if len(self.key_frames) == 1:
            keys = x[:, self.key_frames[0]]
        else:
            keys = x[:, list(self.key_frames)].flatten(0, 1)
        spatial = self.backbone(keys * self.scale + self.shift)
        if len(self.key_frames) > 1:
            spatial = spatial.reshape(n, len(self.key_frames), -1).mean(1)
        temporal = self.temporal(x) if mixed is None else self.temporal.from_mixed(mixed)
        return torch.cat([spatial, temporal], 1)

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Trunk and heads on :meth:`features`: quality, artifact logits, intensities."""
        h = self.trunk(features)
        quality = torch.sigmoid(self.quality_head(h)).squeeze(1)
        return quality, self.artifact_head(h), torch.sigmoid(self.intensity_head(h))
