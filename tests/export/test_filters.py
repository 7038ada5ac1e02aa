"""FFmpeg's own filters as degradation generators (export/filters.py), run for real through PyAV."""
from __future__ import annotations

import numpy as np
import pytest

from export import filters as F

PRE = 6


def moving_texture(frames: int = 20, step: int = 4, seed: int = 0) -> np.ndarray:
    """A smooth random texture panning ``step`` px per frame (RGB uint8 [T, 96, 128, 3])."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    wide = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (48, 256, 3)).astype(np.uint8), (512, 96)), (0, 0), 0.8)
    return np.stack([wide[:, step * t : step * t + 128] for t in range(frames)])


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ F.LUMA


def test_noise_label_is_what_the_filter_added_and_grows_with_strength():
    frames = moving_texture()
    weak, weak_labels = F.noise(frames, 8)
    strong, strong_labels = F.noise(frames, 60)
    assert F.luma_std_added(frames, weak) < F.luma_std_added(frames, strong)
    assert weak_labels.names() == strong_labels.names() == ["gaussian_noise"]
    assert weak_labels.intensity.max() < strong_labels.intensity.max()
    temporal, _ = F.noise(frames, 30, temporal=True)
    assert not np.array_equal(temporal[1] - frames[1].astype(np.int16), temporal[2] - frames[2].astype(np.int16))


@pytest.mark.parametrize("make", [lambda f: F.gaussian_blur(f, 2.5), lambda f: F.box_blur(f, 3),
                                  lambda f: F.rescale(f, 3.0, "area", "bicubic")])
def test_blurs_remove_detail_and_are_labelled_defocus(make):
    frames = moving_texture()
    out, labels = make(frames)
    detail = lambda x: float(np.abs(np.diff(luma(x), axis=2)).mean())
    assert out.shape == frames.shape and detail(out) < 0.8 * detail(frames)
    assert labels.names() == ["defocus_blur"]


def test_frame_average_is_the_mean_of_the_last_frames():
    frames = moving_texture()
    out, labels = F.frame_average(frames, 3, speed=4.0, pre=PRE)
    assert len(out) == len(frames) - PRE
    expected = frames[-3:].astype(np.float32).mean(0)
    assert np.abs(out[-1].astype(np.float32) - expected).mean() < 2.0
    assert labels.names() == ["motion_blur"]
    _, still = F.frame_average(frames, 3, speed=0.5, pre=PRE)  # nothing moves far enough to smear
    assert still.names() == []


def test_trails_only_brighten_and_are_labelled_ghosting():
    frames = moving_texture()
    out, labels = F.trails(frames, 0.95, speed=4.0, pre=PRE)
    assert (luma(out) >= luma(frames[PRE:]) - 2.0).all()
    assert luma(out).mean() > luma(frames[PRE:]).mean() + 1.0
    assert labels.names() == ["ghosting"]


def test_drop_repeat_holds_frames():
    frames = moving_texture(30)
    out, labels = F.drop_repeat(frames, 12.5, speed=4.0, pre=PRE)
    repeats = sum(np.array_equal(a, b) for a, b in zip(out[:-1], out[1:]))
    assert len(out) == len(frames) - PRE and repeats >= len(out) // 2 - 2
    assert labels.names() == ["judder"]


def test_blended_rate_conversion_mixes_neighbours():
    frames = moving_texture(30)
    out, labels = F.blended_rate_conversion(frames, 12.5, speed=4.0, pre=PRE)
    src = frames[PRE:].astype(np.float32)
    # some output frames are in between two source frames, not equal to any of them
    blended = [min(np.abs(o.astype(np.float32) - s).mean() for s in src) > 1.0 for o in out]
    assert sum(blended) >= 3 and labels.names() == ["ghosting"]


def test_bit_depth_leaves_few_luma_levels():
    frames = moving_texture(4)
    cv2 = pytest.importorskip("cv2")
    out, labels = F.bit_depth(frames, 3)
    levels = lambda x: len(np.unique(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb)[..., 0] for f in x])))
    assert levels(out) < levels(frames) / 3
    assert labels.names() == ["color_banding"]


def test_hue_saturation_changes_colour_not_luma():
    frames = moving_texture(4)
    out, labels = F.hue_saturation(frames, 0.3)
    spread = lambda x: float(x.astype(np.float32).std(-1).mean())
    assert spread(out) < 0.6 * spread(frames)
    assert np.abs(luma(out) - luma(frames)).mean() < 6.0
    assert labels.names() == ["saturation"]


def test_ffmpeg_detectors_see_blocking_and_blur():
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    from export.peers import ffmpeg_detector

    image = skimage_data.astronaut()
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    blocky = cv2.resize(cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA), (512, 512), interpolation=cv2.INTER_NEAREST)
    assert ffmpeg_detector(blurred, "blurdetect") > ffmpeg_detector(image, "blurdetect") + 2
    assert ffmpeg_detector(blocky, "blockdetect") > ffmpeg_detector(image, "blockdetect") + 0.5
