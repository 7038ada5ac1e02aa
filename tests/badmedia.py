"""A corpus of bad and unusual media, generated at test time with Debian's ffmpeg (seeded, so repeatable).

    files = build_corpus(tmp_dir)        # {name: path}; see CORPUS for what each one is

Each file is something a monitored source may really deliver: damaged bytes, a cut-off recording, an
empty or tiny file, no video at all, odd or tiny picture sizes, 10-bit video, and a resolution or
pixel-format change in the middle of a stream.
"""
from __future__ import annotations

import random
import subprocess
from pathlib import Path

from servers import ffmpeg_exe

SECONDS = 4

# name -> what it is (the builder below makes each one)
CORPUS = {
    "zero_length.ts": "an empty file",
    "tiny_1000_bytes.ts": "the first 1,000 bytes of a TS: no complete frame",
    "truncated.ts": "a TS cut at 40 %, mid-packet",
    "truncated.mp4": "an MP4 cut at 60 % (its index at the end is missing)",
    "bitflip_1pct.mp4": "an MP4 with 1 % of its bytes bit-flipped",
    "bitflip_1pct.ts": "a TS with 1 % of its bytes bit-flipped",
    "bitflip_mjpeg.avi": "MJPEG with junk over the picture data of every third frame",
    "audio_only.ts": "AAC audio and no video stream",
    "odd_size_17x11.mkv": "17x11 pixels, 4:4:4",
    "tiny_2x2.mkv": "2x2 pixels",
    "ten_bit.mkv": "H.264 High 10, yuv420p10le",
    "three_frames.mp4": "3 frames, shorter than one 7-frame window",
    "resolution_change.ts": "640x360 then 320x240 in one stream",
    "pixel_format_change.ts": "yuv420p then yuv444p in one stream",
    "garbage.mp4": "random bytes named .mp4",
}


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120,
                   stdin=subprocess.DEVNULL)


def _encode(path: Path, size: str = "320x240", pix_fmt: str = "yuv420p", codec: str = "libx264",
            seconds: float = SECONDS, frames: int | None = None, extra: tuple[str, ...] = ()) -> Path:
    length = ("-frames:v", str(frames)) if frames else ("-t", str(seconds))
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", *length, "-c:v", codec, "-pix_fmt", pix_fmt,
            "-g", "25", *extra, str(path))
    return path


def _flip_bits(data: bytes, fraction: float, rng: random.Random, start: int = 0) -> bytes:
    out = bytearray(data)
    for _ in range(max(1, int(len(out) * fraction))):
        i = rng.randrange(start, len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _damage_mjpeg(data: bytes, rng: random.Random) -> bytes:
    """Overwrite part of the entropy-coded data of every third JPEG frame with zeros and 0xFF bytes."""
    out = bytearray(data)
    starts = [i for i in range(len(out) - 1) if out[i] == 0xFF and out[i + 1] == 0xD8]
    for n, start in enumerate(starts):
        if n % 3 == 1:
            for i in range(start + 700, min(start + 1400, len(out) - 2)):
                out[i] = rng.choice((0x00, 0xFF))
    return bytes(out)


def build_corpus(directory: Path, seed: int = 13) -> dict[str, Path]:
    """Write every file of :data:`CORPUS` into ``directory`` (reused when present); returns name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = {name: directory / name for name in CORPUS}
    if all(path.exists() for path in files.values()):
        return files
    work = directory / "work"
    work.mkdir(exist_ok=True)
    clean_ts = _encode(work / "clean.ts")
    clean_mp4 = _encode(work / "clean.mp4")
    ts, mp4 = clean_ts.read_bytes(), clean_mp4.read_bytes()
    files["zero_length.ts"].write_bytes(b"")
    files["tiny_1000_bytes.ts"].write_bytes(ts[:1000])
    files["truncated.ts"].write_bytes(ts[: int(len(ts) * 0.4) + 17])
    files["truncated.mp4"].write_bytes(mp4[: int(len(mp4) * 0.6)])
    files["bitflip_1pct.mp4"].write_bytes(_flip_bits(mp4, 0.01, rng, start=64))
    files["bitflip_1pct.ts"].write_bytes(_flip_bits(ts, 0.01, rng))
    mjpeg = _encode(work / "clean_mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p", extra=("-q:v", "3"))
    files["bitflip_mjpeg.avi"].write_bytes(_damage_mjpeg(mjpeg.read_bytes(), rng))
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(SECONDS), "-c:a", "aac",
            str(files["audio_only.ts"]))
    _encode(files["odd_size_17x11.mkv"], size="17x11", pix_fmt="yuv444p")
    _encode(files["tiny_2x2.mkv"], size="2x2", pix_fmt="yuv444p")
    _encode(files["ten_bit.mkv"], pix_fmt="yuv420p10le", extra=("-profile:v", "high10"))
    _encode(files["three_frames.mp4"], frames=3)
    first, second = _encode(work / "a.ts", size="640x360", seconds=2), _encode(work / "b.ts", seconds=2)
    files["resolution_change.ts"].write_bytes(first.read_bytes() + second.read_bytes())
    p420, p444 = _encode(work / "p420.ts", seconds=2), _encode(work / "p444.ts", pix_fmt="yuv444p", seconds=2)
    files["pixel_format_change.ts"].write_bytes(p420.read_bytes() + p444.read_bytes())
    files["garbage.mp4"].write_bytes(rng.randbytes(50_000))
    return files
