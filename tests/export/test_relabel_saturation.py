"""export/relabel_saturation.py on a small dataset laid out as export.build_dataset writes it."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from engines.contract import ARTIFACTS, NUM_ARTIFACTS
from export import relabel_saturation as RS
from export.build_dataset import WINDOWS_PER_CLIP
from export.references import grade, write_lossless

SAT = ARTIFACTS.index("saturation")
NOISE = ARTIFACTS.index("gaussian_noise")


def colour_frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    field = cv2.GaussianBlur(rng.random((64, 96, 3)).astype(np.float32), (0, 0), 6)
    field = (field - field.mean((0, 1))) / field.std((0, 1))
    return np.repeat(np.clip(np.rint(128 + 60 * field), 0, 255).astype(np.uint8)[None], 4, 0)


def clip_meta(clip_id: int, reference, ops: list[dict], presence: dict[int, float]) -> dict:
    p, i = [0.0] * NUM_ARTIFACTS, [0.0] * NUM_ARTIFACTS
    for k, v in presence.items():
        p[k], i[k] = 1.0, v
    return {"clip_id": clip_id, "split": "train", "index_in_split": clip_id, "source": "s", "reference": str(reference),
            "ops": ops, "presence": p, "intensity": i, "artifacts": [ARTIFACTS[k] for k in presence],
            "window_quality": [0.9] * WINDOWS_PER_CLIP, "degradation": "+".join(o["op"] for o in ops) or "clean"}


@pytest.fixture
def dataset(tmp_path):
    colour = write_lossless(colour_frames(), tmp_path / "colour.mkv")
    mono = write_lossless(grade(colour_frames(), {"kind": "mono"}), tmp_path / "mono.mkv")
    metas = [
        clip_meta(0, colour, [{"op": "saturation", "factor": 0.1}], {SAT: 0.9}),  # near grey: removed
        clip_meta(1, mono, [{"op": "saturation", "factor": 0.5}, {"op": "gaussian_noise", "sigma": 9.0}],
                  {SAT: 0.5, NOISE: 0.36}),  # nothing to desaturate: label goes, noise stays
        clip_meta(2, colour, [{"op": "saturation", "factor": 1.8}], {SAT: 0.5}),  # colourful: kept
        clip_meta(3, colour, [], {}),
    ]
    out = tmp_path / "dataset"
    for d in ("train", "heldout", "_meta"):
        (out / d).mkdir(parents=True)
    for m in metas:
        (out / "_meta" / f"{m['clip_id']:05d}.json").write_text(json.dumps(m))
    n = WINDOWS_PER_CLIP
    np.savez(out / "train" / "shard_00000.npz",
             windows=np.arange(len(metas) * n, dtype=np.uint8)[:, None].repeat(3, 1),
             quality=np.full(len(metas) * n, 0.9, np.float32),
             presence=np.repeat(np.asarray([m["presence"] for m in metas], np.float32), n, 0),
             intensity=np.repeat(np.asarray([m["intensity"] for m in metas], np.float32), n, 0),
             clip_id=np.repeat(np.arange(len(metas), dtype=np.int32), n),
             source=np.asarray(["s"] * len(metas) * n), degradation=np.asarray([m["degradation"] for m in metas for _ in range(n)]))
    counts = {"train": {"clips_planned": 4, "shards": 1}, "heldout": {"clips_planned": 0, "shards": 0}}
    (out / "manifest.json").write_text(json.dumps({"clips": metas, "counts": counts}))
    return out


def test_relabel_removes_near_grey_desaturation_and_relabels_by_colour(dataset):
    record = RS.revise_dataset(dataset)
    assert record["removed_clips"] == {"train": [0], "heldout": []}
    assert record["relabelled_clips"] == [1, 2] and record["saturation_now_absent"] == [1]
    with np.load(dataset / "train" / "shard_00000.npz") as z:
        assert z["clip_id"].tolist() == [1] * 4 + [2] * 4 + [3] * 4
        assert z["windows"][:, 0].tolist() == list(range(4, 16))  # the windows that stay are untouched
        assert np.all(z["presence"][:4, SAT] == 0) and np.all(z["intensity"][:4, NOISE] == pytest.approx(0.36))
        assert np.all(z["presence"][4:8, SAT] == 1) and z["intensity"][4, SAT] == pytest.approx(0.5, abs=0.01)
        assert not z["presence"][8:].any()
    assert not (dataset / "_meta" / "00000.json").exists()
    assert json.loads((dataset / "_meta" / "00001.json").read_text())["artifacts"] == ["gaussian_noise"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert [m["clip_id"] for m in manifest["clips"]] == [1, 2, 3]
    train = manifest["counts"]["train"]
    assert train["windows_in_shards"] == 12 and train["clean_windows"] == 4
    assert train["windows_with_artifact"]["saturation"] == 4 and train["windows_with_artifact"]["gaussian_noise"] == 4
    assert manifest["revisions"][0]["revision"] == RS.REVISION
    assert RS.revise_dataset(dataset) == {}  # once only
