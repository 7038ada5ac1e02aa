"""VMAF labels: libvmaf (model vmaf_v0.6.1) from the ffmpeg binary shipped in PyPI ``imageio-ffmpeg`` 0.8.1.

Debian's ffmpeg and PyAV's bundled FFmpeg have no libvmaf; imageio-ffmpeg's static build does.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

MODEL = "vmaf_v0.6.1"


def ffmpeg_exe() -> str:
    env = os.environ.get("VQA_VMAF_FFMPEG")
    if env:
        return env
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def vmaf_frames(distorted: str | Path, reference: str | Path, n_threads: int = 1, timeout: float = 600.0) -> np.ndarray:
    """Per-frame VMAF (0..100) of ``distorted`` against ``reference`` (same size, frame count and rate).

    Both inputs are converted to limited-range yuv420p first, so full-range MJPEG compares correctly.
    """
    with tempfile.TemporaryDirectory(prefix="vmaf_") as tmp:
        log = Path(tmp) / "v.json"
        graph = (
            "[0:v]scale=out_range=tv,format=yuv420p,setpts=PTS-STARTPTS[d];"
            "[1:v]scale=out_range=tv,format=yuv420p,setpts=PTS-STARTPTS[r];"
            f"[d][r]libvmaf=model=version={MODEL}:n_threads={int(n_threads)}:log_fmt=json:log_path={log}"
        )
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1",
               "-i", str(distorted), "-i", str(reference), "-lavfi", graph, "-f", "null", "-"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not log.exists():
            raise RuntimeError(f"libvmaf failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        data = json.loads(log.read_text())
    return np.asarray([f["metrics"]["vmaf"] for f in data["frames"]], dtype=np.float32)


def window_quality(per_frame: np.ndarray, window: int = 7) -> np.ndarray:
    """Mean VMAF / 100 of each non-overlapping ``window``-frame window, clipped to 0..1."""
    n = len(per_frame) // window
    q = per_frame[: n * window].reshape(n, window).mean(axis=1) / 100.0
    return np.clip(q, 0.0, 1.0).astype(np.float32)
