"""How well an engine's per-fragment ``artifact_map`` finds damage that covers part of the frame.

    python -m export.localisation --engine classical --out export/reports/localisation_classical.json

Held-out photographs (the sources ``references.split_sources`` keeps out of training) are
degraded on one half or one quadrant of a 1280x720 frame (a blur, noise, impulse noise, a starved
x264 encode of that part, posterisation), sampled exactly as the daemon samples (7 frames, the
fragment grid at the cell centres) and scored. Per clip the ``k`` strongest fragments of the
damaged artifact's map (``k`` = the number of damaged fragments) are compared with the damaged
part; the report gives, per artifact, the mean share of them that fall inside it (the *hit rate*)
next to the share a random map would get (the damaged fraction of the grid).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engines.contract import ARTIFACTS, FRAGMENT_GRID, FRAGMENT_SIZE, WINDOW_FRAMES
from engines.sampler import grid_offsets, planes_from_rgb, sample_frame

WIDTH, HEIGHT = 1280, 720
REGIONS = ("left", "right", "top_left", "bottom_right")


def region_mask(region: str, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Boolean ``[H, W]`` mask of a half (``left``/``right``) or a quadrant of the frame."""
    mask = np.zeros((height, width), dtype=bool)
    h, w = height // 2, width // 2
    rows, cols = {"left": (slice(None), slice(0, w)), "right": (slice(None), slice(w, None)),
                  "top_left": (slice(0, h), slice(0, w)), "bottom_right": (slice(h, None), slice(w, None))}[region]
    mask[rows, cols] = True
    return mask


def fragment_mask(mask: np.ndarray) -> np.ndarray:
    """``[7, 7]``: the fragments (at the daemon's cell-centre positions) whose centre is damaged."""
    offsets = grid_offsets(*mask.shape)
    centre = FRAGMENT_SIZE // 2
    return mask[np.ix_(offsets.ys + centre, offsets.xs + centre)]


def _blur(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(rgb, (0, 0), float(rng.uniform(3.0, 6.0)))


def _noise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rgb + rng.normal(0.0, rng.uniform(12.0, 25.0), rgb.shape), 0, 255).astype(np.uint8)


def _impulse(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = rgb.copy()
    hit = rng.random(rgb.shape[:2]) < rng.uniform(0.01, 0.03)
    out[hit] = rng.choice([0, 255], size=(int(hit.sum()), 1)).astype(np.uint8)
    return out


def _starved_x264(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame through libx264 at a constant quantiser of 45-51 (PyAV), decoded back."""
    import av

    qp = int(rng.integers(45, 52))
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qp": str(qp), "preset": "veryfast"}
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")))
        container.mux(stream.encode())
    with av.open(io.BytesIO(buf.getvalue())) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    out = rgb.copy()
    out[:h, :w] = decoded
    return out


def _posterise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    step = int(rng.integers(24, 48))
    return (rgb // step * step + step // 2).clip(0, 255).astype(np.uint8)


DAMAGE: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "defocus_blur": _blur,
    "gaussian_noise": _noise,
    "impulse_noise": _impulse,
    "blocking": _starved_x264,
    "color_banding": _posterise,
}


def damaged_window(frame: np.ndarray, artifact: str, region: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A still window of ``frame`` damaged by ``artifact`` in ``region`` and its ``[7, 7]`` fragment mask."""
    mask = region_mask(region, *frame.shape[:2])
    damaged = frame.copy()
    # damage the bounding box of the region, so filters see real content at its edges
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    damaged[box] = DAMAGE[artifact](frame[box], rng)
    sampled = sample_frame(planes_from_rgb(damaged), grid_offsets(*frame.shape[:2]))
    return np.repeat(sampled[None], WINDOW_FRAMES, axis=0), fragment_mask(mask)


def hit_rate(amap: np.ndarray, damaged: np.ndarray) -> float:
    """Share of the ``k`` strongest fragments of ``amap`` ``[7, 7]`` inside ``damaged`` (k = its size)."""
    k = int(damaged.sum())
    strongest = np.argsort(amap.ravel(), kind="stable")[::-1][:k]
    return float(damaged.ravel()[strongest].mean())


def heldout_frames(seed: int = 0) -> tuple[list[str], list[np.ndarray]]:
    """The held-out photographs at 1280x720 (area-resized crops)."""
    import cv2

    from export.references import discover_sources, load_photo, split_sources

    sources = {s.name: s for s in discover_sources() if s.kind == "photo"}
    names = [n for n in split_sources(list(sources.values()))["heldout"] if n in sources]
    frames = []
    for name in names:
        photo = load_photo(sources[name].path)
        h, w = photo.shape[:2]
        scale = max(WIDTH / w, HEIGHT / h)
        resized = cv2.resize(photo, (max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        y, x = (resized.shape[0] - HEIGHT) // 2, (resized.shape[1] - WIDTH) // 2
        frames.append(np.ascontiguousarray(resized[y : y + HEIGHT, x : x + WIDTH]))
    return names, frames


def evaluate(engine, frames: list[np.ndarray], seed: int = 0, repeats: int = 2) -> dict:
    """Hit rate per artifact (and the chance level) of ``engine``'s map on the damaged frames."""
    rng = np.random.default_rng(seed)
    results: dict[str, dict] = {}
    for artifact, _ in DAMAGE.items():
        index = ARTIFACTS.index(artifact)
        hits, chance, probability = [], [], []
        for frame in frames:
            for region in REGIONS:
                for _ in range(repeats):
                    window, damaged = damaged_window(frame, artifact, region, rng)
                    out = engine.infer(window[None])
                    amap = engine.artifact_map(window[None]) if hasattr(engine, "artifact_map") else out.artifact_map
                    if amap is None:
                        return {"map": False}
                    hits.append(hit_rate(amap[0, index], damaged))
                    chance.append(float(damaged.mean()))
                    probability.append(float(out.artifact_probabilities[0, index]))
        results[artifact] = {"clips": len(hits), "hit_rate": round(float(np.mean(hits)), 3),
                             "chance": round(float(np.mean(chance)), 3),
                             "window_probability": round(float(np.mean(probability)), 3)}
    return {"map": True, "artifacts": results}


def main(argv: list[str] | None = None) -> int:
    from engines.chain import load_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="classical", help="engine spec as in engine.prefer (e.g. classical, onnxruntime:aqs_effnet_b0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="damaged clips per photograph, artifact and region")
    parser.add_argument("--models-dir", type=Path, help="model files (default: engines/models)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    names, frames = heldout_frames(args.seed)
    if not frames:
        print("no held-out photographs found (run export.fetch_sources first)", file=sys.stderr)
        return 1
    engine = load_spec(args.engine, model_dir=args.models_dir)
    report = {"engine": engine.info.engine, "model": engine.info.model, "sources": names,
              "regions": list(REGIONS), "seed": args.seed, **evaluate(engine, frames, args.seed, args.repeats)}
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
