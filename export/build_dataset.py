"""Build the AQS training / held-out dataset (resumable; shards appear while it runs).

    nohup nice -n 5 .venv/bin/python -m export.build_dataset --out data/dataset --workers 2 > data/build.log 2>&1 &

For every planned clip: render a smooth pan/zoom reference (lossless FFV1 yuv420p, shared by the clips of
one scene variant, in ``data/refs/``), apply 0-3 degradations at native resolution (:mod:`export.degrade`),
write the result to a yuv420p file (lossless, or the encoder's own output), decode that file with PyAV,
label every frame with VMAF against the reference, and cut 4 non-overlapping 7-frame windows with
:func:`engines.sampler.sample_frame` (one seeded ``grid_offsets`` draw per window).

Output (a contract with :mod:`export.train`, :mod:`export.train_classical` and :mod:`export.evaluate`)::

    OUT/{train,heldout}/shard_XXXXX.npz   windows uint8 [M,7,3,224,224], quality f32 [M],
                                          presence f32 [M,10], intensity f32 [M,10], clip_id i32 [M],
                                          source str [M], degradation str [M]
    OUT/manifest.json                     splits, seeds, counts, per-clip parameters and VMAF

Held-out clips are also kept as files (``data/heldout_clips/``) with their references (``data/refs/``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engines.contract import ARTIFACTS, NUM_ARTIFACTS, WINDOW_FRAMES
from export import degrade as D
from export import filters as F
from export import references as R
from export.vmaf import vmaf_frames, window_quality

SEED = 20261122
CLIP_FRAMES = R.CLIP_FRAMES
WINDOWS_PER_CLIP = CLIP_FRAMES // WINDOW_FRAMES
SHARD_CLIPS = 16
VARIANTS = 6  # scene variants (trajectories) per source; the last FAST_VARIANTS move fast
FAST_VARIANTS = 2
MOTION_FAMILIES = ("motion_blur", "judder", "ghosting")  # made from the synthetic motion: not on real video
MOTION_OPS = ("motion_blur", "judder", "ghosting", "ff_tmix", "ff_tblend", "ff_lagfun", "ff_framerate", "ff_fps")

# relative weights of the degradation families for non-clean clips
FAMILY_WEIGHTS = {
    "encoder": 3.0, "gaussian_noise": 1.0, "impulse_noise": 0.8, "defocus": 1.2, "motion_blur": 1.1,
    "ghosting": 1.0, "judder": 1.1, "color_banding": 1.0, "saturation": 0.9,
}
ENCODER_WEIGHTS = {"x264": 0.34, "x265": 0.14, "vp9": 0.14, "mpeg2": 0.14, "mjpeg": 0.12, "x264br": 0.12}
ENCODER_RANGES = {"x264": (18, 51), "x265": (18, 51), "vp9": (20, 63), "mpeg2": (2, 31), "mjpeg": (2, 31),
                  "x264br": (0.2, 0.003), "x264qp": (18, 51), "x265br": (0.2, 0.003), "vp9br": (0.2, 0.003),
                  "av1": (24, 63), "mpeg4": (2, 31)}
# the light end of each ladder (VMAF ~85-97), for the broad plan's light encodes
LIGHT_ENCODES = {"x264": (18, 26), "x265": (18, 28), "vp9": (24, 36), "mpeg2": (2, 6), "mpeg4": (2, 6),
                 "mjpeg": (2, 6), "av1": (24, 38)}
P_CLEAN = 0.12
P_LIGHT_ENCODE = 0.06
P_GRADE = 0.3  # share of clips whose reference is monochrome or tinted (references.grade), half each
TINT_AMOUNT = (0.1, 0.45)
# Desaturation stops short of grey: a near-grey picture cannot be told from monochrome content without
# a reference, and monochrome content is clean.
DESATURATION_FACTORS = (0.25, 0.65)
OVERSATURATION_FACTORS = (1.4, 2.6)
# Camera-delivered references (references.camera): clean content as a camera hands it over, so sensor
# noise, lens softness, in-camera sharpening and the camera's own light compression read as clean.
P_CAMERA = 0.0
CAMERA_NOISE_GAIN = (0.005, 0.06)  # shot noise: sigma^2 grows by this per 8-bit luma level
CAMERA_NOISE_FLOOR = (0.3, 2.0)  # read noise, 8-bit levels
CAMERA_SOFT_SIGMA = (0.35, 0.9)
CAMERA_SHARPEN = (0.2, 0.9)
CAMERA_JPEG = (80, 96)  # quality; a quarter of the cameras write no JPEG


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def slug(name: str) -> str:
    return name.replace("/", "_")


# -------------------------------------------------------------------------------------------- plan
def _pick(rng: np.random.Generator, weights: dict[str, float], k: int = 1) -> list[str]:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    return [names[i] for i in rng.choice(len(names), size=k, replace=False, p=p / p.sum())]


def _sample_op(family: str, rng: np.random.Generator) -> dict:
    if family == "encoder":
        name = _pick(rng, ENCODER_WEIGHTS)[0]
        lo, hi = ENCODER_RANGES[name]
        u = float(rng.random()) ** 0.75  # lean towards heavy compression
        if name == "x264br":
            value = float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u))
        else:
            value = float(round(lo + (hi - lo) * u))
        return {"op": "encode", "encoder": name, "value": value, "preset": str(rng.choice(["veryfast", "faster", "medium"]))}
    if family == "gaussian_noise":
        return {"op": "gaussian_noise", "sigma": float(2.0 * 12.5 ** rng.random())}
    if family == "impulse_noise":
        return {"op": "impulse_noise", "amount": float(0.001 * 50 ** rng.random())}
    if family == "defocus":
        if rng.random() < 0.5:
            return {"op": "defocus_blur", "radius": float(rng.uniform(1.0, D.DEFOCUS_MAX_RADIUS))}
        return {"op": "rescale_blur", "factor": float(rng.uniform(1.5, 4.0)), "up": str(rng.choice(["linear", "cubic"]))}
    if family == "motion_blur":
        return {"op": "motion_blur", "shutter": float(rng.uniform(0.5, 1.0))}
    if family == "ghosting":
        return {"op": "ghosting", "alpha": float(rng.uniform(0.15, 0.5)), "delay": int(rng.integers(1, 4))}
    if family == "judder":
        return {"op": "judder", "pattern": str(rng.choice(list(D.JUDDER_PATTERNS)))}
    if family == "color_banding":
        return {"op": "color_banding", "levels": int(rng.integers(6, 33))}
    if family == "saturation":
        f = float(rng.uniform(*DESATURATION_FACTORS)) if rng.random() < 0.5 else float(rng.uniform(*OVERSATURATION_FACTORS))
        return {"op": "saturation", "factor": f}
    raise ValueError(family)


# The broad generator set (``--generators broad``): every family made by several independent
# implementations (op names; for the encoder family, ladders of :data:`export.degrade.ENCODERS` and
# "abr", a down-scaled rendition encoded and scaled back up). Relative weights within a family.
GENERATORS: dict[str, dict[str, float]] = {
    "encoder": {"x264": 0.22, "x265": 0.1, "vp9": 0.1, "mpeg2": 0.1, "mjpeg": 0.07, "x264br": 0.08, "x264qp": 0.07,
                "x265br": 0.06, "vp9br": 0.06, "av1": 0.08, "mpeg4": 0.07, "abr": 0.12},
    "gaussian_noise": {"gaussian_noise": 1.0, "ff_noise": 1.0},
    "impulse_noise": {"impulse_noise": 1.0, "impulse_channels": 0.7},
    "defocus": {"defocus_blur": 1.0, "rescale_blur": 0.8, "ff_gblur": 1.0, "ff_avgblur": 0.6, "ff_scale": 0.8},
    "motion_blur": {"motion_blur": 1.0, "ff_tmix": 1.0, "ff_tblend": 0.4, "ff_dblur": 0.6},
    "ghosting": {"ghosting": 1.0, "ff_lagfun": 1.0, "ff_framerate": 0.8},
    "judder": {"judder": 1.0, "ff_fps": 1.0},
    "color_banding": {"color_banding": 1.0, "ff_lutyuv": 1.0},
    "saturation": {"saturation": 1.0, "ff_hue": 1.0},
}
# One implementation per family that a generalisation run trains without (``export.train
# --exclude-generators``) and is then tested on: the held-out-generator table of the model card.
HELDOUT_GENERATORS: dict[str, tuple[str, ...]] = {
    "encoder": ("av1", "mpeg4"), "gaussian_noise": ("ff_noise",), "impulse_noise": ("impulse_channels",),
    "defocus": ("ff_gblur",), "motion_blur": ("ff_tmix",), "ghosting": ("ff_lagfun",), "judder": ("ff_fps",),
    "color_banding": ("ff_lutyuv",), "saturation": ("ff_hue",),
}
# the artifact each family makes (the one its held-out generator is tested for)
FAMILY_ARTIFACT = {"encoder": "blocking", "gaussian_noise": "gaussian_noise", "impulse_noise": "impulse_noise",
                   "defocus": "defocus_blur", "motion_blur": "motion_blur", "ghosting": "ghosting", "judder": "judder",
                   "color_banding": "color_banding", "saturation": "saturation"}
HELDOUT_IMPLEMENTATIONS = {family: {name: GENERATORS[family][name] for name in names}
                           for family, names in HELDOUT_GENERATORS.items()}
ABR_FACTORS = (1.5, 2.0, 3.0)
RATE_CONVERSIONS = (8.333, 10.0, 12.5, 15.0)


def _saturation_factor(rng: np.random.Generator) -> float:
    return float(rng.uniform(*DESATURATION_FACTORS)) if rng.random() < 0.5 else float(rng.uniform(*OVERSATURATION_FACTORS))


def _encode_op(name: str, rng: np.random.Generator) -> dict:
    lo, hi = ENCODER_RANGES[name]
    u = float(rng.random()) ** 0.75  # lean towards heavy compression
    if D.ENCODERS[name].param == "bitrate":
        value = float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u))
    else:
        value = float(round(lo + (hi - lo) * u))
    return {"op": "encode", "encoder": name, "value": value, "preset": str(rng.choice(["veryfast", "faster", "medium"]))}


def _sample_broad_op(family: str, rng: np.random.Generator, implementations: dict = GENERATORS) -> dict:
    """One degradation of ``family`` by one of its ``implementations``, over the perceptible range."""
    name = _pick(rng, implementations[family])[0]
    if family == "encoder":
        if name != "abr":
            return _encode_op(name, rng)
        return {"op": "encode", "encoder": str(rng.choice(["x264", "x265"])), "value": float(rng.integers(18, 41)),
                "preset": "veryfast", "scale": float(rng.choice(ABR_FACTORS)), "up": str(rng.choice(["linear", "cubic"]))}
    if name in ("gaussian_noise", "impulse_noise", "motion_blur", "ghosting", "judder", "color_banding", "saturation"):
        return _sample_op(name, rng)
    if name == "defocus_blur":
        return {"op": "defocus_blur", "radius": float(rng.uniform(1.0, D.DEFOCUS_MAX_RADIUS))}
    if name == "rescale_blur":
        return {"op": "rescale_blur", "factor": float(rng.uniform(1.5, 4.0)), "up": str(rng.choice(["linear", "cubic"]))}
    params = {
        "ff_noise": lambda: {"strength": int(round(3 * 33 ** rng.random())), "temporal": bool(rng.random() < 0.7),
                             "uniform": bool(rng.random() < 0.5)},
        "impulse_channels": lambda: {"amount": float(0.001 * 50 ** rng.random())},
        "ff_gblur": lambda: {"sigma": float(rng.uniform(0.5, 3.5))},
        "ff_avgblur": lambda: {"radius": int(rng.integers(1, 5))},
        "ff_scale": lambda: {"factor": float(rng.uniform(1.5, 4.0)), "down": str(rng.choice(F.SCALE_KERNELS)),
                             "up": str(rng.choice(F.SCALE_KERNELS))},
        "ff_tmix": lambda: {"frames": int(rng.integers(2, 7))},
        "ff_tblend": lambda: {},
        "ff_dblur": lambda: {"length": float(rng.uniform(4.0, 30.0)), "angle": float(rng.uniform(0.0, 180.0))},
        "ff_lagfun": lambda: {"decay": float(rng.uniform(0.6, 0.97))},
        "ff_framerate": lambda: {"rate": float(rng.choice(RATE_CONVERSIONS))},
        "ff_fps": lambda: {"rate": float(rng.choice(RATE_CONVERSIONS))},
        "ff_lutyuv": lambda: {"bits": int(rng.integers(3, 6))},
        "ff_hue": lambda: {"factor": _saturation_factor(rng)},
    }[name]()
    return {"op": name, **params}


def light_encode(rng: np.random.Generator, generators: str) -> dict:
    """A high-quality encode: x264 CRF 18-23 (classic), or the light end of any codec (broad)."""
    if generators == "classic":
        return {"op": "encode", "encoder": "x264", "value": float(rng.integers(18, 24)), "preset": "veryfast"}
    names = [n for n in LIGHT_ENCODES if generators != "heldout" or n in HELDOUT_GENERATORS["encoder"]]
    name = str(rng.choice(names))
    lo, hi = LIGHT_ENCODES[name]
    return {"op": "encode", "encoder": name, "value": float(rng.integers(lo, hi + 1)), "preset": "veryfast"}


def generator_of(op: dict) -> str:
    """The implementation that made ``op`` (a :data:`GENERATORS` name)."""
    if op["op"] != "encode":
        return op["op"]
    return "abr" if op.get("scale") else op["encoder"]


def _sample_grade(rng: np.random.Generator, p_grade: float) -> dict | None:
    if rng.random() >= p_grade:
        return None
    if rng.random() < 0.5:
        return {"kind": "mono"}
    return {"kind": "tint", "hue": int(rng.integers(0, 360)), "amount": round(float(rng.uniform(*TINT_AMOUNT)), 2)}


def _sample_camera(rng: np.random.Generator, p_camera: float) -> dict | None:
    if rng.random() >= p_camera:
        return None
    optics = str(rng.choice(["soft", "sharp", "none"]))
    amount = {"soft": CAMERA_SOFT_SIGMA, "sharp": CAMERA_SHARPEN, "none": (0.0, 0.0)}[optics]
    return {"seed": int(rng.integers(0, 2**31 - 1)), "optics": optics, "optics_amount": round(float(rng.uniform(*amount)), 3),
            "noise_gain": round(float(rng.uniform(*CAMERA_NOISE_GAIN)), 4),
            "noise_floor": round(float(rng.uniform(*CAMERA_NOISE_FLOOR)), 3),
            "jpeg": int(rng.integers(*CAMERA_JPEG)) if rng.random() >= 0.25 else 0}


def plan(sources: list[R.Source], split: dict[str, list[str]], n_train: int, n_heldout: int, seed: int = SEED,
         p_clean: float = P_CLEAN, p_light_encode: float = P_LIGHT_ENCODE, p_grade: float = P_GRADE,
         generators: str = "broad", p_camera: float = P_CAMERA) -> list[dict]:
    """Deterministic clip plan, interleaved across splits so both fill up together. A clip is clean
    with probability ``p_clean``, a light x264 encode (CRF 18-23) with ``p_light_encode``, and
    otherwise gets 1-3 degradations. Independently, its reference is graded (monochrome or tinted)
    with probability ``p_grade``, drawn from a separate stream so the rest of the plan does not move,
    and a photograph's reference is delivered as a camera would (:func:`export.references.camera`) with
    probability ``p_camera`` (a third stream; the key is absent from clips without one).
    ``generators``: "classic" (one implementation per family, the plan of the first datasets),
    "broad" (:data:`GENERATORS`) or "heldout" (only :data:`HELDOUT_GENERATORS`, one at a time: the
    held-out-generator test set)."""
    sample = {"classic": _sample_op, "broad": _sample_broad_op,
              "heldout": lambda f, r: _sample_broad_op(f, r, HELDOUT_IMPLEMENTATIONS)}[generators]
    kinds = {s.name: s.kind for s in sources}
    specs: dict[str, list[dict]] = {}
    for split_name, n in (("train", n_train), ("heldout", n_heldout)):
        rng = np.random.default_rng([seed, 1 if split_name == "train" else 2])
        grade_rng = np.random.default_rng([seed, 13, 1 if split_name == "train" else 2])
        camera_rng = np.random.default_rng([seed, 17, 1 if split_name == "train" else 2])
        names = split[split_name]
        order = np.concatenate([rng.permutation(len(names)) for _ in range(n // max(1, len(names)) + 1)])[:n]
        out = []
        for j in range(n):
            src = names[int(order[j])]
            r = float(rng.random())
            if r < p_clean:
                ops: list[dict] = []
            elif r < p_clean + p_light_encode:
                ops = [light_encode(rng, generators)]
            else:
                k = 1 if generators == "heldout" else int(rng.choice([1, 2, 3], p=[0.55, 0.33, 0.12]))
                weights = dict(FAMILY_WEIGHTS)
                if kinds[src] == "video":  # real video: no synthetic-motion families
                    for m in MOTION_FAMILIES:
                        weights.pop(m)
                ops = [sample(f, rng) for f in _pick(rng, weights, k)]
            motion = any(o["op"] in MOTION_OPS for o in ops)
            fast = motion or rng.random() < 0.25  # fast motion also appears without artifacts
            variant = int(rng.integers(VARIANTS - FAST_VARIANTS, VARIANTS)) if fast else int(rng.integers(0, VARIANTS - FAST_VARIANTS))
            out.append({"split": split_name, "source": src, "variant": variant, "ops": ops,
                        "window_seed": int(rng.integers(0, 2**31 - 1)), "grade": _sample_grade(grade_rng, p_grade)})
            cam = _sample_camera(camera_rng, p_camera) if kinds[src] == "photo" else None
            if cam is not None:
                out[-1]["camera"] = cam
        specs[split_name] = out
    # interleave: heldout clips spread evenly through the train clips
    merged: list[dict] = []
    tr, ho = specs["train"], specs["heldout"]
    ratio = len(ho) / max(1, len(tr))
    hi = 0
    for i, c in enumerate(tr):
        merged.append(c)
        while hi < len(ho) and hi < (i + 1) * ratio:
            merged.append(ho[hi])
            hi += 1
    merged += ho[hi:]
    counters = {"train": 0, "heldout": 0}
    for cid, c in enumerate(merged):
        c["clip_id"] = cid
        c["index_in_split"] = counters[c["split"]]
        counters[c["split"]] += 1
    return merged


def scene_spec(source: R.Source, variant: int, seed: int = SEED) -> R.SceneSpec:
    rng = np.random.default_rng([seed, 7, variant, int.from_bytes(source.name.encode()[:8].ljust(8, b"\0"), "little")])
    fast = variant >= VARIANTS - FAST_VARIANTS
    speed = float(rng.uniform(6.0, 14.0)) if fast else float(rng.uniform(0.4, 4.0))
    size = None
    start = 0
    if source.kind == "video":
        start = int(rng.integers(4, R.video_frames(source.path) - CLIP_FRAMES - 6))
    else:
        photo_hw = R.load_photo(source.path).shape[:2]
        sizes = list(R.OUTPUT_SIZES)
        fit = sizes.index(R.fit_size(photo_hw))
        if fit == 0 and rng.random() < 0.5:
            fit = 1  # keep the 1080p share modest
        if fast and fit + 1 < len(sizes):
            fit += 1  # room for a long pan
        size = sizes[fit]
    return R.SceneSpec(source=source.name, seed=int(rng.integers(0, 2**31 - 1)), speed=speed, size=size, start=start,
                       extra={"variant": variant, "fast": fast})


# ------------------------------------------------------------------------------------------- clips
def degradation_tag(ops: list[dict]) -> str:
    if not ops:
        return "clean"
    tags = []
    for o in ops:
        if o["op"] == "encode":
            lad = D.ENCODERS[o["encoder"]]
            if lad.param == "bitrate":
                tags.append(f"{o['encoder']}_bpp{o['value']:.3f}")
            else:
                tags.append(f"{o['encoder']}_{lad.param}{int(o['value'])}")
            if o.get("scale"):
                tags[-1] += f"_abr{o['scale']:.1f}"
        else:
            tags.append(o["op"])
    return "+".join(tags)


def tag_generators(tag: str) -> set[str]:
    """The :data:`GENERATORS` names in a :func:`degradation_tag` (empty for a clean clip)."""
    if tag == "clean":
        return set()
    found = set()
    for part in tag.split("+"):
        if "_abr" in part:
            found.add("abr")
        elif part.split("_")[0] in D.ENCODERS:
            found.add(part.split("_")[0])
        else:
            found.add(part)
    return found


# Pixel operations in the order they are applied (blur before colour, colour before noise).
PIXEL_ORDER = ("defocus_blur", "rescale_blur", "ff_gblur", "ff_avgblur", "ff_scale", "ff_dblur", "saturation", "ff_hue",
               "color_banding", "ff_lutyuv", "gaussian_noise", "ff_noise", "impulse_noise", "impulse_channels")
# FFmpeg's temporal filters, applied to the rendered motion before any pixel operation
FILTER_TEMPORAL = ("ff_tmix", "ff_tblend", "ff_lagfun", "ff_framerate", "ff_fps")
FILTER_PRE_ROLL = 10  # frames rendered before the clip for the temporal filters' memory


def apply_pixel_op(frames: np.ndarray, o: dict, rng: np.random.Generator) -> tuple[np.ndarray, D.Labels]:
    name = o["op"]
    if name == "defocus_blur":
        return D.defocus_blur(frames, o["radius"])
    if name == "rescale_blur":
        return D.rescale_blur(frames, o["factor"], up=o["up"])
    if name == "saturation":
        return D.saturation(frames, o["factor"])
    if name == "color_banding":
        return D.color_banding(frames, o["levels"])
    if name == "gaussian_noise":
        return D.gaussian_noise(frames, o["sigma"], rng)
    if name == "impulse_noise":
        return D.impulse_noise(frames, o["amount"], rng)
    if name == "impulse_channels":
        return D.impulse_noise_channels(frames, o["amount"], rng)
    return {
        "ff_gblur": lambda: F.gaussian_blur(frames, o["sigma"]),
        "ff_avgblur": lambda: F.box_blur(frames, o["radius"]),
        "ff_scale": lambda: F.rescale(frames, o["factor"], o["down"], o["up"]),
        "ff_dblur": lambda: F.directional_blur(frames, o["length"], o["angle"]),
        "ff_hue": lambda: F.hue_saturation(frames, o["factor"]),
        "ff_lutyuv": lambda: F.bit_depth(frames, o["bits"]),
        "ff_noise": lambda: F.noise(frames, o["strength"], o["temporal"], o["uniform"]),
    }[name]()


def apply_temporal_filter(frames: np.ndarray, o: dict, speed: float, pre: int) -> tuple[np.ndarray, D.Labels]:
    return {
        "ff_tmix": lambda: F.frame_average(frames, o["frames"], speed, pre),
        "ff_tblend": lambda: F.blend_pairs(frames, speed, pre),
        "ff_lagfun": lambda: F.trails(frames, o["decay"], speed, pre),
        "ff_framerate": lambda: F.blended_rate_conversion(frames, o["rate"], speed, pre),
        "ff_fps": lambda: F.drop_repeat(frames, o["rate"], speed, pre),
    }[o["op"]]()


def encode_rung(frames: np.ndarray, path: Path, o: dict, work_dir: Path) -> D.Labels:
    """An ABR rendition: down-scaled by ``o["scale"]``, encoded, decoded and scaled back up by the player."""
    import cv2

    h, w = frames.shape[1:3]
    sw, sh = max(16, int(w / o["scale"]) // 2 * 2), max(16, int(h / o["scale"]) // 2 * 2)
    small = np.stack([cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA) for f in frames])
    rung, labels = D.encode(small, work_dir / "rung.mkv", o["encoder"], o["value"], preset=o.get("preset", "veryfast"))
    up = cv2.INTER_CUBIC if o.get("up") == "cubic" else cv2.INTER_LINEAR
    R.write_lossless(np.stack([cv2.resize(f, (w, h), interpolation=up) for f in D.decode_rgb(rung)]), path)
    return labels.add("defocus_blur", (o["scale"] - 1.0) / 3.0, o["scale"] >= 1.5)


def make_clip(clip: dict, sources: dict[str, R.Source], refs_dir: Path, work_dir: Path, keep_dir: Path | None,
              seed: int = SEED, vmaf_threads: int = 1) -> dict:
    """Make one clip; returns arrays + metadata (nothing written except the reference and kept files)."""
    from engines.sampler import grid_offsets, planes_from_frame, sample_frame
    import av

    t0 = time.time()
    src = sources[clip["source"]]
    spec = scene_spec(src, clip["variant"], seed)
    ops = clip["ops"]
    rng = np.random.default_rng([seed, 11, clip["clip_id"]])
    by = {o["op"]: o for o in ops}
    delay = int(by["ghosting"]["delay"]) if "ghosting" in by else 0
    filtered = [o for o in ops if o["op"] in FILTER_TEMPORAL]
    scene = R.build_scene(spec, sources, pre_roll=delay + 4)
    T = CLIP_FRAMES
    pre = max(delay, FILTER_PRE_ROLL) if filtered else delay
    if isinstance(scene, R.VideoScene):
        base = 4  # VideoScene frame index of clip frame 0 (pre-roll kept in front)
    else:
        base = 0

    # reference (shared by every clip of this scene variant, grade and camera)
    grade, cam = clip.get("grade"), clip.get("camera")
    looks = "".join(f"_{tag}" for tag in (R.grade_tag(grade), R.camera_tag(cam)) if tag)
    ref_path = refs_dir / f"{slug(src.name)}_v{clip['variant']}{looks}.mkv"
    if not ref_path.exists():
        R.write_lossless(R.camera(R.grade(scene.render([base + t for t in range(T)]), grade), cam, range(T)), ref_path)

    labels = D.Labels()
    times = np.arange(-pre, T, dtype=np.float64)
    if "judder" in by:
        pattern = D.JUDDER_PATTERNS[by["judder"]["pattern"]]
        offset = int(rng.integers(0, sum(pattern)))
        times = D.judder_times(T + pre, pattern, offset) - pre
        labels.merge(D.judder_labels(scene.motion_speed(), pattern))
        by["judder"]["offset"] = offset
    if "motion_blur" in by:
        shutter = float(by["motion_blur"]["shutter"])
        frames, lab = D.motion_blur(scene, base + times, shutter)
        labels.merge(lab)
    else:
        frames = scene.render(base + times)
    frames = R.grade(frames, grade)  # a per-pixel linear map: commutes with the motion-blur integration
    frames = R.camera(frames, cam, times)  # the camera sees the blurred exposure
    speed = scene.motion_speed()
    for o in filtered:
        frames, lab = apply_temporal_filter(frames, o, speed, len(frames) - max(T, delay + T))
        labels.merge(lab)
    for name in PIXEL_ORDER:
        if name in by:
            frames, lab = apply_pixel_op(frames, by[name], rng)
            labels.merge(lab)
    if "ghosting" in by:
        frames, lab = D.ghosting(frames, by["ghosting"]["alpha"], delay, speed)
        labels.merge(lab)
    frames = frames[-T:]

    tag = degradation_tag(ops)
    name = f"{clip['clip_id']:05d}_{slug(src.name)}{looks}_{tag.replace('.', 'p')}"[:120]
    out_dir = keep_dir if keep_dir is not None else work_dir
    dist_path = out_dir / f"{name}.mkv"
    if "encode" in by and by["encode"].get("scale"):
        labels.merge(encode_rung(frames, dist_path, by["encode"], work_dir))
    elif "encode" in by:
        o = by["encode"]
        _, lab = D.encode(frames, dist_path, o["encoder"], o["value"], preset=o.get("preset", "veryfast"))
        labels.merge(lab)
    else:
        R.write_lossless(frames, dist_path)
    t_make = time.time() - t0

    per_frame = vmaf_frames(dist_path, ref_path, n_threads=vmaf_threads)
    if len(per_frame) != T:
        raise RuntimeError(f"VMAF gave {len(per_frame)} frames, expected {T}")
    t_vmaf = time.time() - t0 - t_make

    # decode the file exactly as inference does and cut the windows
    wrng = np.random.default_rng(clip["window_seed"])
    windows = np.empty((WINDOWS_PER_CLIP, WINDOW_FRAMES, 3, 224, 224), dtype=np.uint8)
    n = 0
    with av.open(str(dist_path)) as c:
        offsets = None
        for i, fr in enumerate(c.decode(video=0)):
            if i >= T:
                break
            w, k = divmod(i, WINDOW_FRAMES)
            planes = planes_from_frame(fr)
            if k == 0:
                offsets = grid_offsets(planes.height, planes.width, wrng)
            sample_frame(planes, offsets, out=windows[w, k])
            n += 1
    if n != T:
        raise RuntimeError(f"decoded {n} frames, expected {T}")
    if keep_dir is None:
        dist_path.unlink(missing_ok=True)

    quality = window_quality(per_frame, WINDOW_FRAMES)
    return {
        "windows": windows,
        "quality": quality,
        "presence": labels.presence.copy(),
        "intensity": labels.intensity.copy(),
        "meta": {
            **{k: v for k, v in clip.items() if k != "ops"},
            "ops": ops,
            "degradation": tag,
            "scene": asdict(spec),
            "size": [scene.width, scene.height],
            "speed_px_per_frame": round(float(speed), 3),
            "reference": str(ref_path),
            "distorted": str(dist_path) if keep_dir is not None else None,
            "vmaf_frames": [round(float(v), 3) for v in per_frame],
            "vmaf_mean": round(float(per_frame.mean()), 3),
            "window_quality": [round(float(q), 4) for q in quality],
            "artifacts": labels.names(),
            "presence": labels.presence.tolist(),
            "intensity": [round(float(v), 4) for v in labels.intensity],
            "seconds": {"make": round(t_make, 3), "vmaf": round(t_vmaf, 3), "total": round(time.time() - t0, 3)},
        },
    }


# ---------------------------------------------------------------------------------------- building
class Builder:
    def __init__(self, out: Path, data_root: Path, n_train: int, n_heldout: int, seed: int = SEED, raw_dir: Path | None = None,
                 p_clean: float = P_CLEAN, p_light_encode: float = P_LIGHT_ENCODE, split_seed: int = SEED,
                 p_grade: float = P_GRADE, generators: str = "broad", artwork: bool = False, p_camera: float = P_CAMERA):
        self.out = out
        self.seed = seed
        self.split_seed = split_seed
        self.p_clean, self.p_light_encode, self.p_grade, self.p_camera = p_clean, p_light_encode, p_grade, p_camera
        self.generators = generators
        self.sources_list = R.discover_sources(raw_dir, artwork=artwork)
        self.sources = {s.name: s for s in self.sources_list}
        self.split = R.split_sources(self.sources_list, seed=split_seed)
        self.clips = plan(self.sources_list, self.split, n_train, n_heldout, seed, p_clean, p_light_encode, p_grade,
                          generators, p_camera)
        self.refs_dir = data_root / "refs"
        self.keep_dir = data_root / "heldout_clips"
        self.cache = out / "_clips"
        self.meta_dir = out / "_meta"
        for d in (self.refs_dir, self.keep_dir, self.cache, self.meta_dir, out / "train", out / "heldout"):
            d.mkdir(parents=True, exist_ok=True)

    def shard_of(self, clip: dict) -> tuple[str, int]:
        return clip["split"], clip["index_in_split"] // SHARD_CLIPS

    def shard_path(self, split: str, k: int) -> Path:
        return self.out / split / f"shard_{k:05d}.npz"

    def clip_cache(self, clip: dict) -> Path:
        return self.cache / f"{clip['clip_id']:05d}.npz"

    def todo(self) -> list[dict]:
        return [c for c in self.clips
                if not self.shard_path(*self.shard_of(c)).exists() and not self.clip_cache(c).exists()]

    def save_clip(self, res: dict) -> None:
        meta = res["meta"]
        path = self.clip_cache(meta)
        tmp = path.with_name(path.stem + ".part.npz")
        np.savez(tmp, windows=res["windows"], quality=res["quality"], presence=res["presence"], intensity=res["intensity"])
        os.replace(tmp, path)
        (self.meta_dir / f"{meta['clip_id']:05d}.json").write_text(json.dumps(meta))

    def try_write_shards(self, final: bool = False) -> list[Path]:
        written = []
        groups: dict[tuple[str, int], list[dict]] = {}
        for c in self.clips:
            groups.setdefault(self.shard_of(c), []).append(c)
        for (split, k), members in sorted(groups.items()):
            path = self.shard_path(split, k)
            if path.exists():
                continue
            if not all(self.clip_cache(c).exists() for c in members):
                continue
            arrays = {"windows": [], "quality": [], "presence": [], "intensity": [], "clip_id": [], "source": [], "degradation": []}
            for c in members:
                with np.load(self.clip_cache(c)) as z:
                    meta = json.loads((self.meta_dir / f"{c['clip_id']:05d}.json").read_text())
                    m = z["quality"].shape[0]
                    arrays["windows"].append(z["windows"])
                    arrays["quality"].append(z["quality"])
                    arrays["presence"].append(np.repeat(z["presence"][None], m, 0))
                    arrays["intensity"].append(np.repeat(z["intensity"][None], m, 0))
                    arrays["clip_id"].append(np.full(m, c["clip_id"], np.int32))
                    arrays["source"] += [c["source"]] * m
                    arrays["degradation"] += [meta["degradation"]] * m
            final_arrays = {
                "windows": np.concatenate(arrays["windows"]).astype(np.uint8),
                "quality": np.concatenate(arrays["quality"]).astype(np.float32),
                "presence": np.concatenate(arrays["presence"]).astype(np.float32),
                "intensity": np.concatenate(arrays["intensity"]).astype(np.float32),
                "clip_id": np.concatenate(arrays["clip_id"]).astype(np.int32),
                "source": np.asarray(arrays["source"], dtype=str),
                "degradation": np.asarray(arrays["degradation"], dtype=str),
            }
            tmp = path.with_name(path.stem + ".part.npz")
            np.savez(tmp, **final_arrays)
            os.replace(tmp, path)
            for c in members:
                self.clip_cache(c).unlink(missing_ok=True)
            written.append(path)
            log(f"wrote {path} ({len(final_arrays['quality'])} windows)")
        return written

    def write_manifest(self, elapsed: float | None = None) -> dict:
        metas = []
        for c in self.clips:
            p = self.meta_dir / f"{c['clip_id']:05d}.json"
            if p.exists():
                metas.append(json.loads(p.read_text()))
        counts: dict[str, dict] = {}
        for split in ("train", "heldout"):
            ms = [m for m in metas if m["split"] == split]
            in_shards = [m for m in ms if self.shard_path(split, m["index_in_split"] // SHARD_CLIPS).exists()]
            counts[split] = split_counts(ms, in_shards, sum(1 for c in self.clips if c["split"] == split),
                                         len(list((self.out / split).glob("shard_*.npz"))))
        manifest = {
            "format": {
                "windows": "uint8 [M,7,3,224,224] RGB, engines.sampler.sample_frame of the decoded distorted file",
                "quality": "float32 [M] mean per-frame VMAF (vmaf_v0.6.1) of the window / 100, clipped 0..1",
                "presence": "float32 [M,10] 0/1 in engines.contract.ARTIFACTS order",
                "intensity": "float32 [M,10] 0..1 (0 where absent)",
                "clip_id": "int32 [M]", "source": "str [M]", "degradation": "str [M]",
            },
            "artifacts": list(ARTIFACTS),
            "seed": self.seed,
            "split_seed": self.split_seed,
            "clip_frames": CLIP_FRAMES, "fps": R.FPS, "windows_per_clip": WINDOWS_PER_CLIP, "shard_clips": SHARD_CLIPS,
            "splits": self.split,
            "sources": {s.name: {"path": s.path, "package": s.package, "licence": s.licence, "kind": s.kind} for s in self.sources_list},
            "generators": self.generators,
            "generator_weights": {"families": FAMILY_WEIGHTS, "encoders": ENCODER_WEIGHTS, "encoder_ranges": ENCODER_RANGES,
                                  **({"implementations": GENERATORS, "heldout_generators": HELDOUT_GENERATORS,
                                      "light_encodes": LIGHT_ENCODES} if self.generators != "classic" else {}),
                                  "p_clean": self.p_clean, "p_light_encode": self.p_light_encode, "p_grade": self.p_grade,
                                  "tint_amount": TINT_AMOUNT, "desaturation_factors": DESATURATION_FACTORS,
                                  **({"p_camera": self.p_camera, "camera_noise_gain": CAMERA_NOISE_GAIN,
                                      "camera_noise_floor": CAMERA_NOISE_FLOOR, "camera_soft_sigma": CAMERA_SOFT_SIGMA,
                                      "camera_sharpen": CAMERA_SHARPEN, "camera_jpeg": CAMERA_JPEG} if self.p_camera else {}),
                                  "oversaturation_factors": OVERSATURATION_FACTORS},
            "counts": counts,
            "build_seconds": elapsed,
            "clips": metas,
        }
        revisions = self.out / "revisions.json"  # written by export.relabel_saturation
        if revisions.exists():
            manifest["revisions"] = json.loads(revisions.read_text())
        tmp = self.out / "manifest.json.part"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.out / "manifest.json")
        return manifest


def split_counts(done: list[dict], in_shards: list[dict], planned: int, shards: int) -> dict:
    """The manifest's counts for one split from the metadata of its built clips and of those in shards."""
    return {
        "clips_planned": planned,
        "clips_done": len(done),
        "clips_in_shards": len(in_shards),
        "windows_in_shards": len(in_shards) * WINDOWS_PER_CLIP,
        "shards": shards,
        "windows_with_artifact": {a: int(sum(m["presence"][i] for m in in_shards) * WINDOWS_PER_CLIP)
                                  for i, a in enumerate(ARTIFACTS)},
        "clean_windows": int(sum(1 for m in in_shards if not m["artifacts"]) * WINDOWS_PER_CLIP),
        "quality_histogram": np.histogram([q for m in in_shards for q in m["window_quality"]], bins=10, range=(0, 1))[0].tolist(),
    }


_WORKER: dict = {}


def _init_worker(builder_args: dict) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass
    _WORKER.update(builder_args)


def _run_clip(clip: dict) -> dict:
    a = _WORKER
    keep = a["keep_dir"] if clip["split"] == "heldout" else None
    with tempfile.TemporaryDirectory(prefix="clip_", dir=a["work_root"]) as work:
        try:
            return make_clip(clip, a["sources"], a["refs_dir"], Path(work), keep, a["seed"], a["vmaf_threads"])
        except Exception as e:  # keep going; report
            import traceback

            return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(), "meta": clip}


def print_summary(manifest: dict) -> None:
    for split, c in manifest["counts"].items():
        total = max(1, c["windows_in_shards"])
        log(f"[{split}] clips {c['clips_in_shards']}/{c['clips_planned']} windows {c['windows_in_shards']} shards {c['shards']}")
        log(f"[{split}] clean windows {c['clean_windows']} ({100 * c['clean_windows'] / total:.1f}%)")
        for a, n in c["windows_with_artifact"].items():
            log(f"[{split}]   {a:15s} {n:5d} ({100 * n / total:.1f}%)")
        hist = c["quality_histogram"]
        for i, n in enumerate(hist):
            log(f"[{split}]   quality {i / 10:.1f}-{(i + 1) / 10:.1f} {n:5d} {'#' * int(60 * n / max(1, max(hist)))}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data/dataset")
    ap.add_argument("--data-root", default=None, help="where refs/ and heldout_clips/ go (default: parent of --out)")
    ap.add_argument("--raw", default=None, help="raw sources (default data/raw)")
    ap.add_argument("--train-clips", type=int, default=640)
    ap.add_argument("--heldout-clips", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--vmaf-threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=SEED, help="clip plan and scenes (camera paths)")
    ap.add_argument("--split-seed", type=int, default=SEED,
                    help="which sources are held out; keep the default to add data to the same split")
    ap.add_argument("--p-clean", type=float, default=P_CLEAN, help="share of clean clips")
    ap.add_argument("--p-light-encode", type=float, default=P_LIGHT_ENCODE, help="share of light x264 encodes")
    ap.add_argument("--p-grade", type=float, default=P_GRADE, help="share of clips with a monochrome or tinted reference")
    ap.add_argument("--p-camera", type=float, default=P_CAMERA,
                    help="share of photo clips whose reference comes as a camera delivers it (sensor noise, optics, light JPEG)")
    ap.add_argument("--generators", choices=("broad", "classic", "heldout"), default="broad",
                    help="broad: several implementations per artifact family (GENERATORS); classic: the first "
                         "datasets' plan; heldout: only HELDOUT_GENERATORS, one per clip (a test set)")
    ap.add_argument("--sources", choices=("photos", "artwork"), default="photos",
                    help="photos: the photographs and videos of every earlier dataset; artwork: the other plasma "
                         "wallpapers (rendered artwork, references.PLASMA_ARTWORK), a source set of their own")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new clips (0: all)")
    ap.add_argument("--summary", action="store_true", help="only rewrite the manifest and print the summary")
    args = ap.parse_args(argv)

    out = Path(args.out)
    data_root = Path(args.data_root) if args.data_root else out.parent
    b = Builder(out, data_root, args.train_clips, args.heldout_clips, args.seed, Path(args.raw) if args.raw else None,
                args.p_clean, args.p_light_encode, args.split_seed, args.p_grade, args.generators,
                artwork=args.sources == "artwork", p_camera=args.p_camera)
    log(f"sources: {len(b.sources_list)}; train {len(b.split['train'])}, heldout {len(b.split['heldout'])}: {b.split['heldout']}")
    if args.summary:
        print_summary(b.write_manifest())
        return 0
    b.try_write_shards()
    todo = b.todo()
    if args.limit:
        todo = todo[: args.limit]
    log(f"planned {len(b.clips)} clips, {len(todo)} to do, workers {args.workers}")
    work_root = data_root / "tmp"
    work_root.mkdir(parents=True, exist_ok=True)
    wargs = {"sources": b.sources, "refs_dir": b.refs_dir, "keep_dir": b.keep_dir, "seed": args.seed,
             "vmaf_threads": args.vmaf_threads, "work_root": str(work_root)}
    t0 = time.time()
    done = errors = 0
    if args.workers <= 1:
        _init_worker(wargs)
        results = map(_run_clip, todo)
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(args.workers, initializer=_init_worker, initargs=(wargs,), maxtasksperchild=50)
        results = pool.imap(_run_clip, todo, chunksize=1)
    try:
        for res in results:
            if "error" in res:
                errors += 1
                log(f"ERROR clip {res['meta']['clip_id']}: {res['error']}\n{res['trace']}")
                continue
            b.save_clip(res)
            done += 1
            m = res["meta"]
            el = time.time() - t0
            log(f"clip {m['clip_id']:5d} {m['split']:7s} {m['source']:24s} {m['size'][0]}x{m['size'][1]} "
                f"{m['degradation']:40s} vmaf {m['vmaf_mean']:6.2f} art {','.join(m['artifacts']) or '-'} "
                f"t {m['seconds']['total']:.1f}s | {done}/{len(todo)} {el / done:.2f}s/clip wall, eta {el / done * (len(todo) - done) / 60:.1f} min")
            if b.try_write_shards():
                b.write_manifest(time.time() - t0)
    finally:
        if pool is not None:
            pool.terminate()
    b.try_write_shards()
    manifest = b.write_manifest(time.time() - t0)
    log(f"done: {done} clips, {errors} errors, {time.time() - t0:.0f} s")
    print_summary(manifest)
    shutil.rmtree(work_root, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
