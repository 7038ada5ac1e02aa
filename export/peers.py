"""Classical no-reference peers for the model card: PIQE and BRISQUE (quality), FFmpeg's blockdetect and
blurdetect (artifacts), on whole decoded frames.

* PIQE (Venkatanath et al., "Blind image quality evaluation using perception based features",
  NCC 2015), implemented here in vectorised numpy after the published algorithm and MATLAB's
  ``piqe`` reference behaviour: MSCN coefficients (7x7 Gaussian, sigma 7/6, C = 1), 16x16 blocks,
  active blocks (MSCN variance > 0.1) checked for noticeable artifacts (an edge segment of 6 pixels
  with standard deviation < 0.1) and for Gaussian noise (block sigma > 2 * beta from the
  centre/surround deviation), score ``100 * (sum of block distortions + 1) / (active blocks + 1)``.
  pyiqa's PIQE is the same algorithm, but pyiqa drags in a torchvision that does not import beside
  the CPU torch here, so it is not used. 0 is best, 100 worst.
* BRISQUE (Mittal et al., 2012) from OpenCV contrib (``cv2.quality.QualityBRISQUE_compute``) with
  the LIVE model and range files from Debian's ``opencv-data``. 0 is best, ~100 worst.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK = 16
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
SEGMENT = 6
BRISQUE_DIRS = (Path("/usr/share/opencv4/quality"), Path("/usr/share/opencv/quality"))


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:  # RGB, MATLAB rgb2gray weights
        image = image[..., 0] * 0.298936 + image[..., 1] * 0.587043 + image[..., 2] * 0.114021
    image = image.astype(np.float64)
    peak = image.max()
    return np.round(255.0 * image / peak) if peak > 0 else image


def piqe(image: np.ndarray) -> float:
    """PIQE score of an RGB ``[H, W, 3]`` or grey ``[H, W]`` image (0 best .. 100 worst)."""
    import cv2

    gray = _gray(image)
    pad_h, pad_w = (-gray.shape[0]) % BLOCK, (-gray.shape[1]) % BLOCK
    if pad_h or pad_w:
        gray = np.pad(gray, ((0, pad_h), (0, pad_w)), mode="symmetric")
    mu = cv2.GaussianBlur(gray, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    sigma = np.sqrt(np.abs(cv2.GaussianBlur(gray * gray, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE) - mu * mu))
    mscn = (gray - mu) / (sigma + 1.0)

    h, w = mscn.shape
    blocks = mscn.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)
    variance = blocks.reshape(len(blocks), -1).var(axis=1, ddof=1)
    active = variance > ACTIVITY_THRESHOLD
    blocks, variance = blocks[active], variance[active]
    if len(blocks) == 0:
        return 100.0 * 1.0 / 1.0

    # noticeable artifacts: a flat 6-pixel segment on any of the 4 block edges
    edges = np.stack([blocks[:, 0, :], blocks[:, -1, :], blocks[:, :, 0], blocks[:, :, -1]], 1)  # [B, 4, 16]
    segments = np.lib.stride_tricks.sliding_window_view(edges, SEGMENT, axis=2)  # [B, 4, 11, 6]
    impaired = (segments.std(axis=3, ddof=1) < IMPAIRED_THRESHOLD).any(axis=(1, 2))

    # Gaussian noise: block sigma against the centre (2 middle columns) / surround deviation ratio
    middle = BLOCK // 2
    centre = blocks[:, :, middle - 1 : middle + 1].reshape(len(blocks), -1)
    surround = np.concatenate([blocks[:, :, : middle - 1], blocks[:, :, middle + 1 :]], 2).reshape(len(blocks), -1)
    surround_std = surround.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nan_to_num(centre.std(axis=1, ddof=1) / surround_std, nan=0.0, posinf=0.0)
    block_sigma = np.sqrt(variance)
    beta = np.abs(block_sigma - ratio) / np.maximum(block_sigma, ratio)
    noisy = block_sigma > 2.0 * beta

    distortion = impaired * (1.0 - variance) + noisy * variance
    return float(100.0 * (distortion.sum() + 1.0) / (len(blocks) + 1.0))


class Brisque:
    """OpenCV contrib BRISQUE with the LIVE model (files from Debian ``opencv-data``)."""

    def __init__(self, directory: Path | None = None) -> None:
        import cv2

        if not hasattr(cv2, "quality"):
            raise RuntimeError("cv2.quality is missing: install opencv-contrib-python-headless")
        for candidate in ([directory] if directory else BRISQUE_DIRS):
            model, ranges = candidate / "brisque_model_live.yml", candidate / "brisque_range_live.yml"
            if model.exists() and ranges.exists():
                self.model, self.range = str(model), str(ranges)
                break
        else:
            raise FileNotFoundError("brisque_model_live.yml not found: apt-get install opencv-data")
        self._cv2 = cv2

    def __call__(self, image: np.ndarray) -> float:
        """BRISQUE score of an RGB ``[H, W, 3]`` uint8 image (0 best)."""
        bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])
        return float(self._cv2.quality.QualityBRISQUE_compute(bgr, self.model, self.range)[0])


FFMPEG_DETECTORS = {"blockdetect": "lavfi.block", "blurdetect": "lavfi.blur"}  # filter -> metadata key


def ffmpeg_detector(image: np.ndarray, name: str) -> float:
    """FFmpeg's own ``blockdetect`` or ``blurdetect`` (PyAV's filter graph) on one RGB frame, on its
    yuv420p luma as a decoder delivers it; higher means more blocking / more blur."""
    from fractions import Fraction

    import av

    height, width = image.shape[:2]
    graph = av.filter.Graph()
    nodes = [graph.add_buffer(width=width, height=height, format="rgb24", time_base=Fraction(1, 25)),
             graph.add("format", "yuv420p"), graph.add(name), graph.add("buffersink")]
    graph.link_nodes(*nodes).configure()
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = 0
    graph.push(frame)
    return float(graph.pull().metadata[FFMPEG_DETECTORS[name]])
