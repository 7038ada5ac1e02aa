"""The own EfficientNet-B0 / MobileNetV3-small definitions and the AQS network around them."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engines.architectures import MODEL_NAMES, build_model  # noqa: E402
from engines.architectures.efficientnet import EfficientNetB0  # noqa: E402
from engines.architectures.mobilenetv3 import MobileNetV3Small  # noqa: E402
from engines.contract import INPUT_SHAPE, NUM_ARTIFACTS  # noqa: E402


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("cls", "expected"), [(EfficientNetB0, 5_288_548), (MobileNetV3Small, 2_542_856)])
def test_backbone_parameter_counts_match_torchvision(cls, expected):
    assert n_params(cls(num_classes=1000)) == expected
    assert cls(num_classes=1000)(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def windows(n: int = 2, seed: int = 0) -> torch.Tensor:
    """Smooth moving content (a pan over a random texture), as uint8 windows."""
    g = torch.Generator().manual_seed(seed)
    texture = torch.rand((n, 3, 64, 300), generator=g)
    texture = torch.nn.functional.interpolate(texture, size=(224, 300), mode="bilinear")
    frames = [texture[..., 8 * t : 8 * t + 224] for t in range(7)]
    return (torch.stack(frames, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module", params=MODEL_NAMES)
def model(request):
    torch.manual_seed(0)
    return build_model(request.param).eval()


def test_outputs_follow_the_contract(model):
    x = windows(3)
    assert x.shape == (3, *INPUT_SHAPE) and x.dtype == torch.uint8
    with torch.no_grad():
        quality, logits, intensity = model(x)
    assert quality.shape == (3,) and logits.shape == (3, NUM_ARTIFACTS) and intensity.shape == (3, NUM_ARTIFACTS)
    assert bool(((quality > 0) & (quality < 1)).all()) and bool(((intensity > 0) & (intensity < 1)).all())
    assert bool(torch.isfinite(logits).all())


def test_temporal_branch_sees_frame_order(model):
    x = windows(2)
    shuffled = x[:, [0, 5, 1, 3, 6, 2, 4]]  # key frame 3 stays in place
    with torch.no_grad():
        a, b = model(x), model(shuffled)
    assert torch.equal(x[:, 3], shuffled[:, 3])
    assert not torch.allclose(a[1], b[1], atol=1e-6)


def test_key_frames_argument_is_honoured():
    torch.manual_seed(0)
    model = build_model("aqs_mnv3_small", key_frames=(0, 3, 6)).eval()
    assert model.key_frames == (0, 3, 6)
    seen = []
    model.backbone.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    x = windows(2)
    with torch.no_grad():
        model(x)
    assert seen == [2 * 3]

    single = build_model("aqs_mnv3_small").eval()
    assert single.key_frames == (3,)
    spatial = []
    single.backbone.register_forward_hook(lambda module, args, out: spatial.append(out))
    changed = x.clone()
    changed[:, 0] = 255 - changed[:, 0]  # not a key frame: the backbone input must not change
    with torch.no_grad():
        single(x)
        single(changed)
    assert torch.equal(spatial[0], spatial[1])

    with pytest.raises(ValueError):
        build_model("aqs_mnv3_small", key_frames=(7,))
    with pytest.raises(ValueError):
        build_model("nope")


def test_trains_in_channels_last():
    torch.manual_seed(0)
    model = build_model("aqs_mnv3_small").to(memory_format=torch.channels_last).train()
    quality, logits, intensity = model(windows(2))
    (quality.mean() + logits.mean() + intensity.mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_classical_statistics_feed_the_effnet_trunk_and_accept_crops():
    from engines.architectures.statistics import NUM_STATISTICS

    model = build_model("aqs_effnet_b0").eval()
    assert model.statistics is not None and build_model("aqs_mnv3_small").statistics is None
    x = windows(2)
    with torch.no_grad():
        full = model.features(x)
        crop = model(x[..., :160, :96])  # 5x3 fragments, as export.train --crop-fragments gives
    assert full.shape[1] == model.trunk[0].in_features
    steps = model.temporal.frame_steps(model.temporal.mix(x.float()))
    assert torch.equal(full[:, -NUM_STATISTICS:], model.standardise(model.statistics(x.float(), steps)))
    # the temporal branch's differences (one 1x1 convolution) against the luma's own, to rounding
    torch.testing.assert_close(model.statistics(x.float(), steps), model.statistics(x.float()), rtol=1e-4, atol=1e-4)
    assert all(torch.isfinite(t).all() for t in crop)


def test_classical_statistics_stay_finite_and_close_under_fp16_autocast():
    """CUDA runs the network under fp16 autocast, so the temporal branch hands the statistics fp16
    differences and matrix products run in fp16; a hard cut must not overflow them (CPU autocast
    with float16 does the same casts)."""
    from engines.architectures.statistics import ClassicalStatistics

    x = torch.randint(0, 256, (2, 7, 3, 224, 224), generator=torch.Generator().manual_seed(0)).float()
    x[:, 4:] = 255.0 - x[:, 4:]
    module = ClassicalStatistics()
    with torch.no_grad():
        full = module(x)
        with torch.autocast("cpu", dtype=torch.float16):
            half = module(x, module.frame_steps(x).half())
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half, full, rtol=1e-3, atol=1e-3)
