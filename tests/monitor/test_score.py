"""``vqa-monitor score`` through the real CLI entry point, on real encoded clips."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from engines.aqs import QUALITY_BANDS
from engines.contract import ARTIFACTS

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, FRAMES = 640, 360, 50  # 2 s at 25 fps -> 7 windows


def _encode(path: Path, crf: int, frames: int = FRAMES) -> Path:
    """A smooth pan over a real photograph (scikit-image's astronaut), libx264 at ``crf``."""
    data = pytest.importorskip("skimage.data")
    photo = av.VideoFrame.from_ndarray(np.ascontiguousarray(data.astronaut()), format="rgb24")
    image = photo.reformat(width=900, height=900, format="rgb24", interpolation="BICUBIC").to_ndarray()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for t in range(frames):
            rgb = np.ascontiguousarray(image[20 + t : 20 + t + HEIGHT, 20 + 2 * t : 20 + 2 * t + WIDTH])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return {
        "clean": _encode(root / "clean.mp4", 18),
        "crf50": _encode(root / "crf50.mp4", 50),
        "short": _encode(root / "short.mp4", 18, frames=4),
        "corrupt": corrupt,
        "missing": root / "missing.mp4",
    }


def score(*args: object, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "score", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def scored(clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    proc = score(clips["clean"], clips["crf50"], "--json", "--engine", "classical",
                 "--csv", out / "windows.csv", "--plot", out / "aqs.png")
    return proc, out


def test_json_lines_fields_and_types(scored, clips):
    proc, _ = scored
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(clips["clean"]), str(clips["crf50"])]
    bands = {name for _, name in QUALITY_BANDS}
    for item in lines:
        assert set(item) >= {"path", "aqs", "quality_level", "quality", "artifacts", "intensities", "windows",
                             "engine", "frames", "elapsed_s"}
        assert 0 <= item["aqs"] <= 1 and 0 <= item["quality"] <= 1
        assert item["quality_level"] in bands
        assert list(item["artifacts"]) == list(ARTIFACTS) and list(item["intensities"]) == list(ARTIFACTS)
        assert all(0 <= v <= 1 for v in item["artifacts"].values())
        assert item["frames"] == FRAMES and isinstance(item["frames"], int)
        assert len(item["windows"]) == FRAMES // 7
        starts = [w["start_s"] for w in item["windows"]]
        assert starts == sorted(starts) and starts[0] == pytest.approx(0.0, abs=0.05)
        assert starts[1] == pytest.approx(7 / 25, abs=0.01)
        for w in item["windows"]:
            assert set(w) == {"start_s", "aqs", "artifacts"} and 0 <= w["aqs"] <= 1
        assert item["aqs"] == pytest.approx(np.mean([w["aqs"] for w in item["windows"]]), abs=1e-3)
        assert item["engine"]["engine"] == "classical" and item["engine"]["model"] == "classical.json"
        assert item["elapsed_s"] > 0


def test_clean_clip_scores_above_its_crf50_encode(scored):
    clean, crf50 = (json.loads(line) for line in scored[0].stdout.splitlines())
    assert clean["aqs"] > crf50["aqs"]
    assert clean["quality"] > crf50["quality"]


def test_csv_has_one_row_per_window(scored, clips):
    proc, out = scored
    rows = list(csv.DictReader(open(out / "windows.csv", newline="")))
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == sum(len(r["windows"]) for r in results)
    assert {row["path"] for row in rows} == {str(clips["clean"]), str(clips["crf50"])}
    assert all(f"p_{name}" in rows[0] for name in ARTIFACTS)
    first = results[0]["windows"][0]
    assert float(rows[0]["aqs"]) == pytest.approx(first["aqs"], abs=1e-3)


def test_plot_is_a_png(scored):
    pytest.importorskip("matplotlib")
    png = (scored[1] / "aqs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bad_files_get_an_error_line_and_the_others_are_scored(clips):
    proc = score(clips["missing"], clips["corrupt"], clips["clean"], clips["short"], "--json", "--engine", "classical")
    assert proc.returncode == 1
    scored = [json.loads(line)["path"] for line in proc.stdout.splitlines()]
    assert scored == [str(clips["clean"])]
    for name in ("missing", "corrupt", "short"):
        lines = [line for line in proc.stderr.splitlines() if str(clips[name]) in line]
        assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "too short" in proc.stderr and "no such file" in proc.stderr


def test_human_table_and_progress(clips):
    proc = score(clips["clean"], "--engine", "classical", "--progress", "always")
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()[:2]
    assert header.split()[:3] == ["FILE", "AQS", "LEVEL"] and row.startswith(str(clips["clean"]))
    assert "engine: classical" in proc.stderr
    assert "%" in proc.stderr and "frames" in proc.stderr  # the progress bar


def test_unknown_engine_is_a_usage_error(clips):
    proc = score(clips["clean"], "--engine", "warp-drive")
    assert proc.returncode == 2 and "warp-drive" in proc.stderr and "Traceback" not in proc.stderr


def test_default_chain_scores_too(clips):
    proc = score(clips["clean"], "--json")
    assert proc.returncode == 0, proc.stderr
    item = json.loads(proc.stdout)
    assert item["engine"]["engine"] in ("onnxruntime", "classical", "torch", "tensorrt")


def test_every_window_is_scored_with_a_small_batch(clips, scored):
    """A ring of 2 windows (batch 1) must wait for the scorer, never drop a window."""
    proc = score(clips["clean"], "--json", "--engine", "classical", "--batch", "1")
    assert proc.returncode == 0, proc.stderr
    item = json.loads(proc.stdout)
    assert len(item["windows"]) == FRAMES // 7
    reference = json.loads(scored[0].stdout.splitlines()[0])
    assert item["aqs"] == pytest.approx(reference["aqs"], abs=1e-4)  # batching does not change scores
