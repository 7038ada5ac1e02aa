"""export/train_classical.py end to end on a small dataset of real encoded clips, and the model file it writes."""
from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest

from engines import classical
from engines.contract import ARTIFACTS
from engines.sampler import grid_offsets, planes_from_frame, sample_frame
from export import train_classical

HEIGHT, WIDTH, FRAMES = 240, 400, 21


def _clip_windows(image: np.ndarray, crf: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Pan over ``image``, optionally add noise, encode with libx264 at ``crf``, decode, sample windows."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for t in range(FRAMES):
            rgb = image[10 + t : 10 + t + HEIGHT, 10 + 2 * t : 10 + 2 * t + WIDTH].astype(np.float32)
            if noise:
                rgb = rgb + rng.normal(0, noise, rgb.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(rgb, 0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as container:
        planes = [planes_from_frame(f) for f in container.decode(video=0)]
    offsets = grid_offsets(HEIGHT, WIDTH)
    return np.stack([np.stack([sample_frame(p, offsets) for p in planes[s : s + 7]]) for s in range(0, FRAMES - 6, 7)])


def _write_split(path, images, rng):
    windows, quality, presence, intensity = [], [], [], []
    blocking, noise = ARTIFACTS.index("blocking"), ARTIFACTS.index("gaussian_noise")
    for image in images:
        for crf, sigma, q, artifact in ((16, 0, 0.97, None), (50, 0, 0.3, blocking), (18, 14, 0.55, noise)):
            w = _clip_windows(image, crf, sigma, rng)
            windows.append(w)
            quality += [q] * len(w)
            p = np.zeros((len(w), len(ARTIFACTS)), np.float32)
            if artifact is not None:
                p[:, artifact] = 1
            presence.append(p)
            intensity.append(p * 0.7)
    path.mkdir(parents=True)
    np.savez(
        path / "shard_000.npz",
        windows=np.concatenate(windows),
        quality=np.array(quality, np.float32),
        presence=np.concatenate(presence),
        intensity=np.concatenate(intensity),
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    data = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(3)

    def fit(img):  # at least 300 x 460 for the pan
        reps = (int(np.ceil(300 / img.shape[0])), int(np.ceil(460 / img.shape[1])), 1)
        return np.ascontiguousarray(np.tile(img, reps))

    root = tmp_path_factory.mktemp("dataset")
    _write_split(root / "train", [fit(data.astronaut()), fit(data.chelsea()), fit(data.coffee())], rng)
    _write_split(root / "heldout", [fit(data.rocket())], rng)
    return root


def test_fit_writes_a_verified_numpy_only_model(dataset, tmp_path, capsys):
    out = tmp_path / "models" / classical.MODEL_FILE
    assert train_classical.main(["--data", str(dataset), "--out", str(out), "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "heldout" in printed and "SROCC" in printed and "blocking" in printed

    data = json.loads(out.read_text())
    assert data["format"] == classical.FORMAT and data["feature_names"] == list(classical.FEATURE_NAMES)
    assert data["training"]["train_windows"] == 27 and data["training"]["heldout_windows"] == 9
    assert data["training"]["train_positives"]["blocking"] == 9
    held = data["metrics"]["heldout"]
    for key in ("quality_srocc", "quality_plcc", "aqs_srocc", "aqs_plcc"):
        assert -1 <= held[key] <= 1
    assert set(held["auc"]) == set(ARTIFACTS)
    assert held["auc"]["ghosting"] is None  # no positives: reported as such, not invented
    assert out.stat().st_size < 200_000

    engine = classical.load(model_dir=out.parent)
    shard = np.load(dataset / "heldout" / "shard_000.npz")
    result = engine.infer(shard["windows"])
    clean, blocky = result.quality[shard["quality"] > 0.9], result.quality[shard["quality"] < 0.4]
    assert clean.mean() > blocky.mean()
    probs = result.artifact_probabilities[:, ARTIFACTS.index("blocking")]
    assert probs[shard["presence"][:, 0] > 0].mean() > probs[shard["presence"][:, 0] == 0].mean()


def test_feature_cache_is_reused(dataset, tmp_path):
    cache = tmp_path / "cache"
    first = train_classical.split_features(dataset / "heldout", cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1
    second = train_classical.split_features(dataset / "heldout", cache, progress=False)
    np.testing.assert_array_equal(first["features"], second["features"])


def test_windows_of_excluded_generators_are_left_out(dataset, tmp_path):
    with np.load(dataset / "heldout" / "shard_000.npz") as z:
        arrays = dict(z)
    tags = np.array(["x264_crf16"] * 3 + ["av1_crf50", "clean", "av1_crf30+ff_noise"] + ["ff_noise"] * 3)
    split = tmp_path / "train"
    split.mkdir()
    np.savez(split / "shard_000.npz", **arrays, degradation=tags)
    every = train_classical.split_features(split, tmp_path / "cache", progress=False)
    kept = train_classical.split_features(split, tmp_path / "cache", progress=False,
                                          exclude_generators=frozenset({"av1"}))
    assert len(every["quality"]) == 9 and len(kept["quality"]) == 7
    np.testing.assert_array_equal(kept["features"], np.delete(every["features"], [3, 5], axis=0))


def test_calibration_is_monotone(dataset, tmp_path):
    out = tmp_path / classical.MODEL_FILE
    train_classical.main(["--data", str(dataset), "--out", str(out), "--no-cache"])
    quality = json.loads(out.read_text())["quality"]
    assert np.all(np.diff(quality["calibration_x"]) > 0)
    assert np.all(np.diff(quality["calibration_y"]) >= 0)
