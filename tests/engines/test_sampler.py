"""The fragment sampler: native-resolution crops that match swscale's own RGB conversion."""
from __future__ import annotations

import io

import numpy as np
import pytest

from engines.contract import FRAGMENT_GRID, FRAGMENT_SIZE, INPUT_SIZE
from engines.sampler import Offsets, Planes, grid_offsets, planes_from_frame, planes_from_rgb, sample_frame

av = pytest.importorskip("av")


def photo(width: int = 1280, height: int = 720) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(cv2.resize(skimage_data.astronaut(), (width, height), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def decoded_frames():
    """Three real frames: an x264 encode of a panned photograph, decoded by PyAV (yuv420p)."""
    image = photo()
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for t in range(3):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(image, 4 * t, axis=1)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    with av.open(buf) as container:
        return list(container.decode(video=0))


def crop(rgb: np.ndarray, offsets: Offsets, dy: int = 0, dx: int = 0) -> np.ndarray:
    rows = (offsets.ys[:, None] + dy + np.arange(FRAGMENT_SIZE)).reshape(-1)
    cols = (offsets.xs[:, None] + dx + np.arange(FRAGMENT_SIZE)).reshape(-1)
    return rgb[rows][:, cols].transpose(2, 0, 1)


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


@pytest.mark.parametrize("jitter", [False, True])
def test_fragments_are_native_resolution_crops_of_the_swscale_conversion(decoded_frames, jitter):
    frame = decoded_frames[1]
    planes = planes_from_frame(frame)
    assert planes.y.base is not None or planes.y.flags.owndata is False  # views, not copies
    offsets = grid_offsets(planes.height, planes.width, np.random.default_rng(3) if jitter else None)
    out = sample_frame(planes, offsets)
    assert out.shape == (3, INPUT_SIZE, INPUT_SIZE) and out.dtype == np.uint8
    reference = frame.to_ndarray(format="rgb24")  # swscale's yuv420p -> RGB of the whole frame
    d = diff(out, crop(reference, offsets))
    assert d.mean() < 1.5 and d.max() <= 4, (d.mean(), d.max())
    # and it is that exact position: 2 px off is clearly worse
    assert diff(out, crop(reference, offsets, dx=2)).mean() > 3 * d.mean()
    assert diff(out, crop(reference, offsets, dy=2)).mean() > 3 * d.mean()


def test_full_range_yuvj420p(decoded_frames):
    frame = decoded_frames[0].reformat(format="yuvj420p")
    planes = planes_from_frame(frame)
    assert planes.full_range
    offsets = grid_offsets(planes.height, planes.width)
    reference = crop(frame.to_ndarray(format="rgb24"), offsets)
    d = diff(sample_frame(planes, offsets), reference)
    assert d.mean() < 1.5 and d.max() <= 4
    limited = Planes(planes.y, planes.u, planes.v, full_range=False)  # the wrong range is visibly wrong
    assert diff(sample_frame(limited, offsets), reference).mean() > 4


@pytest.mark.parametrize(("height", "width"), [(720, 1280), (1080, 1920), (361, 641), (224, 224), (500, 333)])
def test_offsets_are_even_and_jitter_stays_in_its_cell(height, width):
    rng = np.random.default_rng(0)
    for draw in [None] + [rng] * 20:
        offsets = grid_offsets(height, width, draw)
        for values, length in ((offsets.ys, height), (offsets.xs, width)):
            cell = length // FRAGMENT_GRID
            starts = np.arange(FRAGMENT_GRID) * cell
            assert values.shape == (FRAGMENT_GRID,)
            assert np.all(values % 2 == 0)
            assert np.all(values >= starts) and np.all(values + FRAGMENT_SIZE <= starts + cell)
    assert np.array_equal(grid_offsets(height, width).xs, grid_offsets(height, width).xs)  # centres are fixed


def test_fragments_are_aligned_across_frames():
    """One offset draw for a window: a 2 px pan moves every fragment's content by exactly 2 px."""
    image = photo()
    frames = [planes_from_rgb(np.ascontiguousarray(np.roll(image, 2 * t, axis=1))) for t in range(3)]
    offsets = grid_offsets(720, 1280, np.random.default_rng(1))
    window = np.stack([sample_frame(p, offsets) for p in frames])
    tiles = window.reshape(3, 3, FRAGMENT_GRID, FRAGMENT_SIZE, FRAGMENT_GRID, FRAGMENT_SIZE)
    moved = diff(tiles[1, ..., 2:], tiles[0, ..., :-2])
    assert moved.mean() < 0.5 and moved.max() <= 2
    assert diff(tiles[1], tiles[0]).mean() > 4 * moved.mean() + 1


@pytest.mark.parametrize(("width", "height"), [(160, 120), (223, 300), (641, 361), (1279, 719)])
def test_small_and_odd_sized_frames(width, height):
    image = photo(width, height)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    planes = planes_from_frame(frame)
    assert planes.width % 2 == 0 and planes.height % 2 == 0
    assert planes.width >= max(width, INPUT_SIZE) and planes.height >= max(height, INPUT_SIZE)
    assert planes.u.shape == (planes.height // 2, planes.width // 2)
    out = sample_frame(planes, grid_offsets(planes.height, planes.width))
    assert out.shape == (3, INPUT_SIZE, INPUT_SIZE)
    assert out.std() > 10  # real picture content, not padding


def test_other_pixel_formats_are_converted():
    image = photo(640, 360)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv444p")
    planes = planes_from_frame(frame)
    assert planes.u.shape == (180, 320) and not planes.full_range


def test_fills_a_preallocated_slot(decoded_frames):
    planes = planes_from_frame(decoded_frames[0])
    offsets = grid_offsets(planes.height, planes.width)
    ring = np.zeros((2, 7, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    result = sample_frame(planes, offsets, out=ring[1, 4])
    assert result is ring[1, 4] or np.shares_memory(result, ring)
    assert ring[1, 4].any() and not ring[0].any()


def test_refuses_frames_smaller_than_the_input():
    with pytest.raises(ValueError):
        grid_offsets(200, 640)
