"""The shipped default model on a source it never saw in training (scikit-image's coffee, a
held-out source), run by ``vqa-monitor score`` exactly as a user runs it: a clean clip and its
x264 CRF 46 encode. Issue 3 asks for clean >= 0.85 and CRF 46 <= 0.4 (met here; on all 29 held-out
references the model card has the full count, which is not all of them).

The clip is made by the dataset's own renderer (smooth sub-pixel pan, lossless FFV1), so it is the
same kind of clip as the held-out references in the model card's check.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.references import FPS, PhotoScene, fit_size, load_photo, random_trajectory, write_h264, write_lossless

REPO = Path(__file__).resolve().parents[2]
FRAMES = 2 * FPS  # 7 windows


@pytest.fixture(scope="module")
def coffee_clips(tmp_path_factory) -> dict[str, Path]:
    skimage = pytest.importorskip("skimage")
    photo = load_photo(Path(skimage.__file__).parent / "data" / "coffee.png")
    size = fit_size(photo.shape[:2])
    scene = PhotoScene(photo, size, random_trajectory(photo.shape[:2], size, np.random.default_rng(5), speed=1.5,
                                                      n_frames=FRAMES))
    frames = scene.render(list(range(FRAMES)))
    root = tmp_path_factory.mktemp("coffee")
    return {"clean": write_lossless(frames, root / "clean.mkv"),
            "crf46": write_h264(frames, root / "crf46.mp4", *size, crf=46, preset="medium")}


def _score(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "monitor", "score", "--json", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[0])


@pytest.fixture(scope="module")
def scored(coffee_clips) -> dict[str, dict]:
    return {name: _score(path) for name, path in coffee_clips.items()}


def test_default_model_tells_the_clean_clip_from_its_crf46_encode(scored):
    clean, crf46 = scored["clean"], scored["crf46"]
    from engines.onnxruntime_engine import cpu_flags, cpu_precisions

    precision = cpu_precisions(cpu_flags())[0][0]  # the file this CPU runs fastest
    expected = "aqs_effnet_b0.int8.onnx" if precision == "int8" else "aqs_effnet_b0.onnx"
    assert clean["engine"]["model"] == crf46["engine"]["model"] == expected
    assert clean["aqs"] - crf46["aqs"] >= 0.3, (clean["aqs"], crf46["aqs"])
    assert clean["quality"] > crf46["quality"]
    assert max(crf46["artifacts"], key=crf46["artifacts"].get) in ("blocking", "ringing"), crf46["artifacts"]
    assert crf46["artifacts"]["blocking"] > clean["artifacts"]["blocking"]


def test_issue3_acceptance_clean_excellent_and_crf46_at_most_0_4(scored):
    assert scored["clean"]["aqs"] >= 0.85, scored["clean"]
    assert scored["crf46"]["aqs"] <= 0.4, scored["crf46"]
