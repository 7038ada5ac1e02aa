"""The classical engine on real pixels: photographs panned, degraded, encoded with libx264 and decoded with PyAV.

Each degraded clip is compared with the clean clip made from the same frames, through the real
sampler, so every feature is measured exactly as the daemon would measure it.
"""
from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest

from engines import classical
from engines.base import Engine, EngineUnavailable
from engines.contract import INPUT_SHAPE, NUM_ARTIFACTS
from engines.modelfiles import DEFAULT_MODEL_DIR as MODELS
from engines.sampler import grid_offsets, planes_from_frame, sample_frame

FRAMES = 14
HEIGHT, WIDTH = 360, 640


def _photo() -> np.ndarray:
    """A real photograph (scikit-image's astronaut), upscaled 1.6x with swscale bicubic."""
    data = pytest.importorskip("skimage.data")
    img = np.ascontiguousarray(data.astronaut())
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    return frame.reformat(width=818, height=818, format="rgb24", interpolation="BICUBIC").to_ndarray()


def _pan(img: np.ndarray, positions: list[int], step: int = 3) -> list[np.ndarray]:
    """Frames of a smooth diagonal pan; ``positions`` are frame times (repeat one to hold a frame)."""
    return [img[20 + p * step // 2 : 20 + p * step // 2 + HEIGHT, 20 + p * step : 20 + p * step + WIDTH].copy() for p in positions]


def _encode(frames: list[np.ndarray], crf: int = 18) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return buf.getvalue()


def _windows(blob: bytes) -> np.ndarray:
    """Decode and sample exactly as the daemon does: [N, 7, 3, 224, 224] uint8."""
    with av.open(io.BytesIO(blob)) as container:
        planes = [planes_from_frame(frame) for frame in container.decode(video=0)]
    offsets = grid_offsets(planes[0].height, planes[0].width)
    return np.stack(
        [np.stack([sample_frame(p, offsets) for p in planes[s : s + 7]]) for s in range(0, len(planes) - 6, 7)]
    )


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma)
    kernel = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = rgb.astype(np.float32)
    pad = np.pad(out, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(kernel[i] * pad[i : i + rgb.shape[0], radius:-radius] for i in range(len(kernel)))
    rpad = np.pad(rows, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    out = sum(kernel[i] * rpad[:, i : i + rgb.shape[1]] for i in range(len(kernel)))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    """Windows of a clean clip and of real degradations of the same frames."""
    rng = np.random.default_rng(7)
    img = _photo()
    base = _pan(img, list(range(FRAMES)))
    as_float = [f.astype(np.float32) for f in base]
    made = {
        "clean": _encode(base, 18),
        "crf50": _encode(base, 50),
        "noise": _encode([np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in as_float], 18),
        "blur": _encode([_blur(f, 2.0) for f in base], 18),
        # judder: the same pan, each position held for 3 frames then a 3-step jump (uneven motion)
        "judder": _encode(_pan(img, [i // 3 * 3 for i in range(FRAMES)]), 18),
        "impulse": _encode(
            [np.where(rng.random(f.shape[:2])[..., None] < 0.02, rng.choice([0, 255], f.shape[:2])[..., None], f).astype(np.uint8) for f in base],
            18,
        ),
        "banding": _encode([(f // 32 * 32 + 16).astype(np.uint8) for f in base], 18),
        "desaturated": _encode([(0.15 * f + 0.85 * f.mean(axis=2, keepdims=True)).astype(np.uint8) for f in as_float], 18),
    }
    return {name: _windows(blob) for name, blob in made.items()}


def _feature(windows: np.ndarray, name: str) -> float:
    return float(classical.extract_features(windows)[:, classical.FEATURE_NAMES.index(name)].mean())


@pytest.mark.parametrize(
    ("degraded", "feature", "direction"),
    [
        ("noise", "noise_immerkaer_p10_log", +1),
        ("noise", "noise_immerkaer_median_log", +1),
        ("crf50", "block_max_log", +1),
        ("crf50", "block_v_log", +1),
        ("crf50", "sharp_lapvar_log", -1),
        ("blur", "sharp_lapvar_log", -1),
        ("blur", "sharp_lapvar_p90_log", -1),
        ("blur", "sharp_hf_ratio_log", -1),
        ("judder", "judder_cv", +1),
        ("judder", "judder_still_frac", +1),
        ("judder", "judder_minmax", -1),
        ("impulse", "impulse_frac_log", +1),
        ("banding", "band_level_ratio", -1),
        ("banding", "band_step_mean", +1),
        ("desaturated", "colourfulness_log", -1),
        ("desaturated", "saturation_mean", -1),
    ],
)
def test_feature_moves_in_the_right_direction(clips, degraded, feature, direction):
    clean, bad = _feature(clips["clean"], feature), _feature(clips[degraded], feature)
    assert (bad - clean) * direction > 0, f"{feature}: clean {clean:.3f}, {degraded} {bad:.3f}"


def test_blockiness_grows_with_crf(clips):
    rng = np.random.default_rng(1)
    img = _photo()
    base = _pan(img, list(range(FRAMES)))
    values = [_feature(_windows(_encode(base, crf)), "block_max_log") for crf in (18, 38, 50)]
    assert values[0] < values[2] and values[1] < values[2], values
    del rng


def test_blockiness_ignores_two_pixel_periodicity():
    """2x nearest-neighbour upscaling (period 2) must not read as 8x8 blocking."""
    data = pytest.importorskip("skimage.data")
    img = np.repeat(np.repeat(data.astronaut(), 2, axis=0), 2, axis=1)
    upscaled = _windows(_encode(_pan(img, list(range(FRAMES))), 18))
    blocky = _windows(_encode(_pan(img, list(range(FRAMES))), 50))
    assert _feature(upscaled, "block8_v_log") < _feature(blocky, "block8_v_log")


def test_features_are_finite_on_flat_and_extreme_input():
    windows = np.zeros((3, *INPUT_SHAPE), dtype=np.uint8)
    windows[1] = 255
    windows[2, :, :, ::2] = 255  # stripes
    feats = classical.extract_features(windows)
    assert feats.shape == (3, classical.NUM_FEATURES)
    assert np.isfinite(feats).all()


def test_features_reject_bad_input():
    with pytest.raises(ValueError):
        classical.extract_features(np.zeros((1, 7, 3, 224, 223), dtype=np.uint8))
    with pytest.raises(ValueError):
        classical.extract_features(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))


def test_laplacian_kernel_is_defined_once():
    source = Path(classical.__file__).read_text()
    assert source.count("LAPLACIAN_KERNEL = ") == 1
    ramp = np.add.outer(np.arange(8.0) ** 2, np.zeros(8))  # d2/dy2 = 2 everywhere
    assert np.allclose(classical.laplacian(ramp), 2.0)


# -- the engine with the shipped model file ---------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    if not (MODELS / classical.MODEL_FILE).exists():
        pytest.fail(f"{MODELS / classical.MODEL_FILE} is missing: run python -m export.train_classical")
    eng = classical.load()
    yield eng
    eng.close()


def test_engine_outputs_follow_the_contract(engine, clips):
    assert isinstance(engine, Engine)
    assert engine.info.engine == "classical" and engine.info.model == "classical.json" and engine.info.provider == "cpu"
    windows = np.concatenate([clips["clean"], clips["crf50"], clips["noise"]])
    out = engine.infer(windows)
    n = len(windows)
    assert out.quality.shape == (n,) and out.artifact_logits.shape == (n, NUM_ARTIFACTS)
    assert out.intensity.shape == (n, NUM_ARTIFACTS)
    for arr in (out.quality, out.artifact_logits, out.intensity):
        assert arr.dtype == np.float32 and np.isfinite(arr).all()
    assert (0 <= out.quality).all() and (out.quality <= 1).all()
    assert (0 <= out.intensity).all() and (out.intensity <= 1).all()
    engine.warm_up(2)
    assert len(engine.infer(np.zeros((0, *INPUT_SHAPE), dtype=np.uint8))) == 0


def test_engine_ranks_clean_above_crf50(engine, clips):
    clean = engine.infer(clips["clean"]).quality.mean()
    crf50 = engine.infer(clips["crf50"]).quality.mean()
    assert clean > crf50


def test_engine_speed(engine, clips):
    windows = np.concatenate([clips["clean"]] * 8)
    engine.infer(windows[:2])
    started = time.perf_counter()
    engine.infer(windows)
    rate = len(windows) / (time.perf_counter() - started)
    print(f"classical engine: {rate:.1f} windows/s ({rate * 7:.0f} frames/s) on one core")
    assert rate > 3  # loose floor; the measured rate is reported, not asserted


# -- the model file is verified --------------------------------------------------------------
@pytest.fixture()
def model_dir(tmp_path):
    shutil.copy(MODELS / classical.MODEL_FILE, tmp_path / classical.MODEL_FILE)
    return tmp_path


def test_missing_model_file_is_refused(tmp_path):
    with pytest.raises(EngineUnavailable, match=str(tmp_path)):
        classical.load(model_dir=tmp_path)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "not json at all",
        lambda text: text.replace('"clip_z": 5.0', '"clip_z": 6.0'),  # edited value: sha256 mismatch
        lambda text: "[]",
    ],
    ids=["truncated", "garbage", "edited", "not-an-object"],
)
def test_corrupt_model_file_is_refused(model_dir, corrupt):
    path = model_dir / classical.MODEL_FILE
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(EngineUnavailable) as info:
        classical.load(model_dir=model_dir)
    assert str(path) in str(info.value) and "corrupt" in str(info.value)


def test_model_for_other_features_is_refused(model_dir):
    from export.train_classical import finalize

    path = model_dir / classical.MODEL_FILE
    data = json.loads(path.read_text())
    data["feature_names"] = data["feature_names"][::-1]
    path.write_text(json.dumps(finalize(data)))
    with pytest.raises(EngineUnavailable, match="feature_names"):
        classical.load(model_dir=model_dir)


def test_chain_selects_classical(model_dir):
    from engines.chain import select_engine

    selection = select_engine(["classical"], model_dir=model_dir)
    assert selection.engine.info.engine == "classical"


def test_threads_give_the_same_outputs(clips):
    windows = np.concatenate([clips["clean"], clips["noise"], clips["crf50"]])
    one, two = classical.load(threads=1), classical.load(threads=2)
    try:
        a, b = one.infer(windows), two.infer(windows)
    finally:
        one.close()
        two.close()
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.artifact_logits, b.artifact_logits)


@pytest.mark.parametrize("spatial_frames", [None, classical.SPATIAL_FRAMES])
def test_graph_statistics_match_the_numpy_features(clips, spatial_frames):
    """The AQS network computes these features in its graph (torch, on its key frame by default);
    both implementations must agree on every real degradation, feature by feature."""
    torch = pytest.importorskip("torch")
    from engines.architectures.statistics import (
        GRAPH_SPATIAL_FRAMES,
        STATISTICS_COLUMNS,
        STATISTICS_NAMES,
        ClassicalStatistics,
    )

    frames = spatial_frames or GRAPH_SPATIAL_FRAMES
    windows = np.concatenate([w[:2] for w in clips.values()])
    expected = classical.extract_features(windows, spatial_frames=frames)[:, list(STATISTICS_COLUMNS)]
    module = ClassicalStatistics() if spatial_frames is None else ClassicalStatistics(spatial_frames)
    with torch.no_grad():
        got = module(torch.from_numpy(windows).float()).numpy()
    for k, name in enumerate(STATISTICS_NAMES):
        np.testing.assert_allclose(got[:, k], expected[:, k], rtol=1e-4, atol=1e-4, err_msg=name)


# ---------------------------------------------------------------------------------------------
# The per-fragment map
# ---------------------------------------------------------------------------------------------
def _half_damaged(artifact: str, region: str = "left"):
    from export.localisation import damaged_window

    data = pytest.importorskip("skimage.data")
    import cv2

    frame = cv2.resize(np.ascontiguousarray(data.astronaut()), (1280, 720), interpolation=cv2.INTER_CUBIC)
    return damaged_window(frame, artifact, region, np.random.default_rng(3))


def test_map_has_the_contract_shape_and_leaves_the_window_outputs_unchanged():
    engine = classical.load()
    window, _ = _half_damaged("gaussian_noise")
    windows = np.stack([window, np.ascontiguousarray(window[:, :, ::-1])])  # a second, different window
    amap = engine.artifact_map(windows)
    assert amap.shape == (2, NUM_ARTIFACTS, 7, 7) and amap.dtype == np.float32 and np.isfinite(amap).all()
    out = engine.infer(windows)
    assert out.artifact_map is None  # asked for, not computed with every window
    both = engine._model.predict(classical.extract_features(windows), classical.fragment_features(windows))
    np.testing.assert_array_equal(both.artifact_map, amap)
    np.testing.assert_array_equal(out.artifact_logits, both.artifact_logits)
    np.testing.assert_array_equal(out.quality, both.quality)
    assert engine.artifact_map(np.zeros((0, *INPUT_SHAPE), np.uint8)).shape == (0, NUM_ARTIFACTS, 7, 7)


@pytest.mark.parametrize("region", ["left", "bottom_right"])
def test_map_points_at_the_damaged_part_of_the_frame(region):
    """Impulse noise, the artifact it localises best (export/reports/localisation_classical.json has
    the hit rates of every artifact the map is measured on)."""
    from engines.contract import ARTIFACTS
    from export.localisation import hit_rate

    window, damaged = _half_damaged("impulse_noise", region)
    amap = classical.load().artifact_map(window[None])[0, ARTIFACTS.index("impulse_noise")]
    assert hit_rate(amap, damaged) >= 0.8, amap.round(1)
    # and the clean part reads lower than the damaged part
    assert amap[damaged].mean() > amap[~damaged].mean() + 1.0
