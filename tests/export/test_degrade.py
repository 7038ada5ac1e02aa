"""Degradation generators (export/degrade.py) and VMAF labels (export/vmaf.py), measured, not mocked.

Each test measures the property the generator is named after on small seeded synthetic content
(smoothed random texture, gradients, a linear pan rendered by the real ``PhotoScene``), and checks the
labels against the intensity table in the module docstring.  Encoders are the real libraries through
PyAV; VMAF is the real libvmaf in imageio-ffmpeg's ffmpeg.
"""
from __future__ import annotations

from functools import lru_cache

import av
import cv2
import numpy as np
import pytest

from engines.contract import ARTIFACTS, NUM_ARTIFACTS
from export import degrade as D
from export.references import PhotoScene, camera, grade

pytestmark = pytest.mark.timeout(120)

W, H = 160, 96  # even, multiple of 16: every encoder accepts it
IDX = {name: i for i, name in enumerate(ARTIFACTS)}


# ------------------------------------------------------------------------------------------- helpers
@lru_cache(maxsize=None)
def _texture(h: int, w: int, seed: int, sigma: float = 1.5) -> np.ndarray:
    """Seeded smoothed-noise luma detail (std ~40) on a smooth colour field (std ~25), about 128 mean."""
    r = np.random.default_rng(seed)
    lum = cv2.GaussianBlur(r.random((h, w)).astype(np.float32), (0, 0), sigma)
    lum = (lum - lum.mean()) / lum.std()
    col = cv2.GaussianBlur(r.random((h, w, 3)).astype(np.float32), (0, 0), 12)
    col = (col - col.mean((0, 1))) / col.std((0, 1))
    img = np.clip(np.rint(128 + 40 * lum[..., None] + 25 * col), 0, 255).astype(np.uint8)
    img.setflags(write=False)
    return img


def texture(h: int = H, w: int = W, seed: int = 0, sigma: float = 1.5) -> np.ndarray:
    return _texture(h, w, seed, sigma).copy()


def pan_clip(n: int = 8, w: int = W, h: int = H, step: int = 3, seed: int = 1) -> np.ndarray:
    """``n`` frames of a whole-pixel horizontal pan (``step`` px/frame) over a bigger texture."""
    big = texture(h + 40, w + step * n + 40, seed)
    return np.stack([big[20 : 20 + h, 20 + step * t : 20 + step * t + w] for t in range(n)])


def luma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def laplacian_var(frames: np.ndarray, border: int = 8) -> float:
    y = luma(frames).astype(np.float32)
    lap = np.stack([cv2.Laplacian(f, cv2.CV_32F) for f in y])
    return float(lap[:, border:-border, border:-border].var())


def grad_energy(frames: np.ndarray, border: int = 12) -> tuple[float, float]:
    """Mean squared luma difference along x and along y (border cropped: reflected edges are not motion)."""
    y = luma(frames)[:, border:-border, border:-border]
    return float(np.mean(np.diff(y, axis=2) ** 2)), float(np.mean(np.diff(y, axis=1) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def only(labels: D.Labels, name: str, intensity: float | None = None) -> None:
    """``labels`` mark exactly ``name`` present (and with ``intensity``, when given)."""
    assert labels.names() == [name]
    assert labels.presence.shape == labels.intensity.shape == (NUM_ARTIFACTS,)
    if intensity is not None:
        assert labels.intensity[IDX[name]] == pytest.approx(intensity, abs=1e-6)


def nothing(labels: D.Labels) -> None:
    assert labels.names() == [] and not labels.intensity.any()


class LinearPan:
    """Duck-typed ``references.Trajectory``: constant velocity (vx, vy) photo px / frame, zoom 1."""

    def __init__(self, c0: tuple[float, float], v: tuple[float, float]):
        self.c0, self.v = c0, v

    def at(self, t):
        t = np.asarray(t, dtype=np.float64)
        return self.c0[0] + self.v[0] * t, self.c0[1] + self.v[1] * t, np.ones_like(t)

    def speed(self, n_frames: int = 28) -> float:
        return float(np.hypot(*self.v))


def pan_scene(v: tuple[float, float], seed: int = 3) -> PhotoScene:
    """The real PhotoScene (cubic warps, shutter integration) over a texture, moving at constant ``v``."""
    photo = texture(480, 640, seed)
    return PhotoScene(photo, (W, H), LinearPan((320.0, 240.0), v), source="synthetic")


def shift_between(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Sub-pixel translation from frame ``a`` to frame ``b`` (phase correlation on luma)."""
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(luma(a[None])[0], luma(b[None])[0], win)
    return dx, dy


def test_labels_follow_the_contract_order():
    lab = D.Labels().add("saturation", 0.3).add("blocking", 2.0).add("ringing", 0.01)
    assert lab.names() == ["blocking", "ringing", "saturation"]  # ARTIFACTS order, not insertion order
    assert lab.intensity[IDX["blocking"]] == 1.0 and lab.intensity[IDX["ringing"]] == 0.05
    lab.add("judder", 0.9, present=False)
    assert "judder" not in lab.names() and lab.intensity[IDX["judder"]] == 0.0


# -------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("sigma", [4.0, 10.0, 20.0])
def test_gaussian_noise_has_the_requested_std(sigma):
    # Content kept well inside 0..255 (5 sigma) so clipping does not shrink the noise.
    src = np.clip(128 + (texture().astype(np.int16) - 128) // 4, 100, 156).astype(np.uint8)
    frames = np.stack([src] * 4)
    out, lab = D.gaussian_noise(frames, sigma, np.random.default_rng(5))
    assert out.shape == frames.shape and out.dtype == np.uint8
    res = out.astype(np.float64) - frames
    # rounding to integers adds 1/12 of variance
    assert res.std() == pytest.approx(np.sqrt(sigma**2 + 1 / 12), rel=0.03)
    assert abs(res.mean()) < 0.1
    # independent per pixel, per channel and per frame
    flat = res.reshape(4, -1, 3)
    assert abs(np.corrcoef(flat[..., 0].ravel(), flat[..., 1].ravel())[0, 1]) < 0.03
    assert abs(np.corrcoef(flat[0].ravel(), flat[1].ravel())[0, 1]) < 0.03
    assert abs(np.corrcoef(res[0, :, :-1].ravel(), res[0, :, 1:].ravel())[0, 1]) < 0.03  # white, not blurred
    only(lab, "gaussian_noise", sigma / 25.0)


def test_gaussian_noise_labels_small_and_large_sigma():
    frames = np.full((2, 32, 32, 3), 128, np.uint8)
    out, lab = D.gaussian_noise(frames, 1.5, np.random.default_rng(0))
    assert 1.2 < (out.astype(np.float64) - frames).std() < 1.8  # it is there ...
    nothing(lab)  # ... but below sigma 2 it is not labelled
    _, lab = D.gaussian_noise(frames, 40.0, np.random.default_rng(0))
    only(lab, "gaussian_noise", 1.0)  # clipped to 1
    _, lab = D.gaussian_noise(frames, 2.0, np.random.default_rng(0))
    only(lab, "gaussian_noise", 2.0 / 25.0)


@pytest.mark.parametrize("amount", [0.002, 0.01, 0.05])
def test_impulse_noise_hits_the_requested_fraction(amount):
    src = np.clip(texture(), 1, 254)  # the source has no exact 0 or 255
    frames = np.stack([src] * 6)
    out, lab = D.impulse_noise(frames, amount, np.random.default_rng(11))
    salt = np.all(out == 255, axis=-1)
    pepper = np.all(out == 0, axis=-1)
    changed = np.any(out != frames, axis=-1)
    n = salt.size
    frac = (salt.sum() + pepper.sum()) / n
    tol = 4 * np.sqrt(amount * (1 - amount) / n)  # 4 binomial standard deviations
    assert abs(frac - amount) < tol, (frac, amount)
    assert np.array_equal(changed, salt | pepper)  # every other pixel is untouched, in all channels
    assert not np.any((out == 0) | (out == 255), axis=-1)[~(salt | pepper)].any()  # no partly-hit pixels
    assert abs(salt.sum() / (salt.sum() + pepper.sum()) - 0.5) < 0.1  # salt and pepper half and half
    assert not np.array_equal(salt[0], salt[1])  # new positions every frame
    only(lab, "impulse_noise", np.clip(np.log(amount / 0.001) / np.log(50.0), 0.05, 1.0))


def test_impulse_noise_label_threshold_and_salt_ratio():
    frames = np.full((2, 64, 64, 3), 100, np.uint8)
    out, lab = D.impulse_noise(frames, 0.0005, np.random.default_rng(0))
    nothing(lab)
    out, lab = D.impulse_noise(frames, 0.05, np.random.default_rng(0), salt=1.0)
    assert not (out == 0).any() and (out == 255).any()
    only(lab, "impulse_noise", 1.0)  # log(50)/log(50)


# --------------------------------------------------------------------------------------------- blur
def test_defocus_blur_energy_drops_with_radius():
    frames = np.stack([texture(seed=s) for s in range(2)])
    base = laplacian_var(frames)
    radii = [1.0, 2.0, 3.0, 4.5, 6.0]
    energies = []
    for r in radii:
        out, lab = D.defocus_blur(frames, r)
        assert out.shape == frames.shape and out.dtype == np.uint8
        assert abs(out.astype(np.float64).mean() - frames.mean()) < 1.0  # energy-preserving kernel
        energies.append(laplacian_var(out))
        only(lab, "defocus_blur", min(r / 6.0, 1.0))
    assert energies[0] < 0.7 * base
    assert all(b < 0.8 * a for a, b in zip(energies, energies[1:])), energies
    assert energies[-1] < 0.05 * base


def test_defocus_blur_is_a_disk_and_tiny_radius_is_identity():
    img = np.zeros((1, 41, 41, 3), np.uint8)
    img[0, 20, 20] = 255
    for r in (3.0, 5.0):
        k = D.disk_kernel(r)
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        out, _ = D.defocus_blur(img.astype(np.float32), r)  # float input: no rounding of the PSF
        psf = out[0, ..., 0]
        yy, xx = np.mgrid[:41, :41] - 20
        dist = np.hypot(yy, xx)
        assert psf[dist > r + 0.5].max() == 0  # nothing outside the disk
        inner = psf[dist <= r - 1]
        assert inner.max() - inner.min() < 1e-3 * inner.max()  # flat top (a disk, not a gaussian)
        assert psf.sum() == pytest.approx(255.0, rel=1e-4)
    frames = texture()[None]
    out, lab = D.defocus_blur(frames, 0.5)
    assert np.array_equal(out, frames)
    nothing(lab)


def test_rescale_blur_energy_drops_with_factor():
    frames = np.stack([texture(seed=s) for s in range(2)])
    base = laplacian_var(frames)
    factors = [1.5, 2.0, 3.0, 4.0]
    energies = []
    for f in factors:
        out, lab = D.rescale_blur(frames, f)
        assert out.shape == frames.shape and out.dtype == np.uint8
        energies.append(laplacian_var(out))
        only(lab, "defocus_blur", (f - 1.0) / 3.0)
    assert energies[0] < 0.7 * base
    assert all(b < 0.8 * a for a, b in zip(energies, energies[1:])), energies
    out, lab = D.rescale_blur(frames, 1.2)
    nothing(lab)  # too mild to label
    for down, up in (("linear", "linear"), ("area", "cubic")):  # (nearest-up makes blocks, not blur)
        out, _ = D.rescale_blur(frames, 3.0, down=down, up=up)
        assert laplacian_var(out) < 0.6 * base


@pytest.mark.parametrize("velocity", [(12.0, 0.0), (0.0, 12.0)], ids=["horizontal", "vertical"])
def test_motion_blur_is_directional(velocity):
    scene = pan_scene(velocity)
    times = [2.0, 5.0]
    sharp = scene.render(times)
    blurred, lab = D.motion_blur(scene, times, shutter=1.0)
    assert blurred.shape == sharp.shape == (2, H, W, 3)
    ex0, ey0 = grad_energy(sharp)
    ex1, ey1 = grad_energy(blurred)
    along, across = (ex1 / ex0, ey1 / ey0) if velocity[0] else (ey1 / ey0, ex1 / ex0)
    assert along < 0.15, along  # blurred hard along the motion ...
    assert along < 0.25 * across, (along, across)  # ... much more than across it
    assert across > 0.25
    only(lab, "motion_blur", 12.0 / 24.0)
    # it is the sharp picture smeared by a 12 px box along the motion, centred on the frame time
    c = (slice(None), slice(16, -16), slice(24, -24))
    axis = 0 if velocity[0] else 1
    err = {(a, s): np.abs(np.roll(box_along(sharp, 12.0, a), s, axis=2 - a)[c] - blurred[c]).mean()
           for a in (0, 1) for s in (-1, 0, 1)}
    assert err[axis, 0] < 4.0, err
    assert err[axis, 0] < 0.7 * min(err[axis, -1], err[axis, 1]), err  # centred
    assert err[axis, 0] < 0.4 * err[1 - axis, 0], err  # along the motion, not across it


def box_along(frames: np.ndarray, length: float, axis: int = 0) -> np.ndarray:
    """Continuous box of ``length`` px along x (``axis`` 0) or y (1), anti-aliased ends: the ideal
    linear motion-blur PSF."""
    n = int(np.ceil(length / 2)) * 2 + 3
    x = np.arange(n) - n // 2
    k = np.clip(length / 2 + 0.5 - np.abs(x), 0.0, 1.0).astype(np.float32)[None, :]
    k /= k.sum()
    k = k if axis == 0 else np.ascontiguousarray(k.T)
    return np.stack([cv2.filter2D(f.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT101) for f in frames])


def test_motion_blur_length_is_speed_times_shutter():
    scene = pan_scene((8.0, 0.0), seed=4)
    times = [3.0]
    sharp = scene.render(times)
    previous = None
    for shutter in (0.25, 0.5, 1.0, 2.0):
        length = 8.0 * shutter
        out, lab = D.motion_blur(scene, times, shutter=shutter)
        # the blur matches an ideal box of length speed * shutter better than half or twice that
        c = (slice(None), slice(16, -16), slice(24, -24))
        err = {f: np.abs(box_along(sharp, f * length)[c] - out[c]).mean() for f in (0.5, 1.0, 2.0)}
        assert err[1.0] < err[0.5] and err[1.0] < err[2.0], (shutter, err)
        e = grad_energy(out)[0]
        if previous is not None:
            assert e < previous  # a longer shutter smears more
        previous = e
        if length >= 3.0:
            only(lab, "motion_blur", length / 24.0)
        else:
            nothing(lab)
    # static content: no smear and no label, whatever the shutter
    still = pan_scene((0.0, 0.0))
    out, lab = D.motion_blur(still, times, shutter=1.0)
    assert np.abs(out.astype(np.int16) - still.render(times)).max() <= 1
    nothing(lab)


@pytest.mark.parametrize("speed", [3.0, 4.5, 12.0, 24.0])
def test_motion_blur_smear_equals_its_labelled_length(speed):
    """The box that best explains the smear is as long as the label says (a sensor integrating over the
    shutter), also with the few sub-frame samples used for short blurs."""
    scene = pan_scene((speed, 0.0), seed=4)
    sharp = scene.render([3.0])
    out, lab = D.motion_blur(scene, [3.0], shutter=1.0)
    c = (slice(None), slice(16, -16), slice(30, -30))
    lengths = speed * np.linspace(0.6, 1.6, 51)
    errs = [np.abs(box_along(sharp, length)[c] - out[c]).mean() for length in lengths]
    best = lengths[int(np.argmin(errs))]
    assert best == pytest.approx(speed, rel=0.1), (speed, best)
    only(lab, "motion_blur", speed / 24.0)


# ------------------------------------------------------------------------------------------ temporal
@pytest.mark.parametrize("alpha,delay", [(0.3, 1), (0.45, 2)])
def test_ghosting_is_a_delayed_blend(alpha, delay):
    frames = np.random.default_rng(2).integers(0, 256, size=(7, 24, 32, 3), dtype=np.uint8)
    out, lab = D.ghosting(frames, alpha, delay, speed=4.0)
    assert out.shape == (7 - delay, 24, 32, 3) and out.dtype == np.uint8
    expect = (1 - alpha) * frames[delay:].astype(np.float64) + alpha * frames[:-delay]
    assert np.abs(out - expect).max() <= 0.5 + 1e-3  # within rounding
    swapped = alpha * frames[delay:].astype(np.float64) + (1 - alpha) * frames[:-delay]
    gap = (1 - 2 * alpha) * np.abs(frames[delay:].astype(np.float64) - frames[:-delay]).mean()
    assert np.abs(out - swapped).mean() > 0.9 * gap  # the echo is the faint one
    only(lab, "ghosting", alpha / 0.5)


def test_ghosting_labels_depend_on_motion():
    frames = np.stack([texture()] * 5)
    out, lab = D.ghosting(frames, 0.4, 2, speed=0.0)
    assert np.array_equal(out, frames[2:])  # a copy of a static picture on itself is invisible ...
    nothing(lab)  # ... and not labelled
    nothing(D.ghosting(frames, 0.05, 2, speed=8.0)[1])  # too faint
    nothing(D.ghosting(frames, 0.4, 1, speed=1.5)[1])  # echo displaced < 2 px
    only(D.ghosting(frames, 0.4, 1, speed=2.0)[1], "ghosting", 0.8)
    out, lab = D.ghosting(frames, 0.4, 0, speed=8.0)
    assert np.array_equal(out, frames)  # no delay, no echo
    nothing(lab)


def hold_lengths(times: np.ndarray) -> list[int]:
    change = np.flatnonzero(np.diff(times) != 0)
    edges = np.concatenate([[0], change + 1, [len(times)]])
    return list(np.diff(edges))


@pytest.mark.parametrize("pattern", list(D.JUDDER_PATTERNS.values()), ids=list(D.JUDDER_PATTERNS))
@pytest.mark.parametrize("offset", [0, 1, 4])
def test_judder_times_hold_1_to_3_and_keep_real_time(pattern, offset):
    n = 60
    t = D.judder_times(n, pattern, offset)
    assert t.shape == (n,)
    holds = hold_lengths(t)
    assert max(holds) <= 3 and min(holds) >= 1  # never a freeze
    assert max(holds) == max(pattern)
    # the shown time lags the real time (frame index) by less than one hold: speed is kept on average
    lag = np.arange(n) - t
    assert lag.min() >= 0 and lag.max() <= max(pattern) - 1
    slope = np.polyfit(np.arange(n), t, 1)[0]
    assert slope == pytest.approx(1.0, abs=0.02)
    steps = np.diff(t)
    assert set(np.unique(steps)) <= {0.0} | {float(h) for h in pattern}  # jumps by the hold length
    assert (steps == 0).any() and (steps > 1).any()  # uneven: holds and jumps, not smooth
    # the offset shifts the pattern's phase, not the clock
    t0 = D.judder_times(n + offset, pattern, 0)
    assert np.array_equal(t, t0[offset:] - offset)


def test_judder_times_without_holds_is_smooth():
    assert np.array_equal(D.judder_times(10, (1,)), np.arange(10.0))


def test_judder_renders_uneven_jumps_of_the_real_motion():
    """The scene rendered at judder times, labelled by judder_labels: what build_dataset.make_clip does."""
    speed = 4.0
    scene = pan_scene((speed, 0.0), seed=5)
    n, pattern = 15, (2, 3)
    times = D.judder_times(n, pattern)
    frames, lab = scene.render(times), D.judder_labels(scene.motion_speed(), pattern)
    assert frames.shape == (n, H, W, 3)
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).reshape(n - 1, -1).max(axis=1)
    held = diffs == 0
    assert np.array_equal(held, np.diff(times) == 0)  # frames repeat exactly where the time is held
    assert held.any() and not held.all()  # exact repeats between jumps: not a freeze, not smooth
    jumps = [abs(shift_between(frames[i], frames[i + 1])[0]) for i in np.flatnonzero(~held)]
    assert sorted({round(j) for j in jumps}) == [8, 12]  # speed x hold: 2- and 3-frame holds
    # over whole cycles the picture moves as far as the smooth clip does: 10 frames -> 40 px
    total = abs(shift_between(frames[0], frames[10])[0])
    assert total == pytest.approx(10 * speed, abs=0.5)
    only(lab, "judder", speed * 2.5 / 30.0)
    # held frames are exactly the scene at the held time
    assert np.array_equal(frames[[0, 4]], scene.render(times[[0, 4]]))


def test_judder_labels():
    nothing(D.judder_labels(1.0, (2, 3)))  # jumps of 2.5 px are not visible judder
    nothing(D.judder_labels(8.0, (1,)))  # no holds: smooth
    only(D.judder_labels(20.0, (3,)), "judder", 1.0)  # 60 px jumps, clipped to 1
    only(D.judder_labels(4.0, (2,)), "judder", 8.0 / 30.0)  # the threshold itself: 8 px jumps
    nothing(D.judder_labels(1.5, (2,)))  # 3 px: below it


# ------------------------------------------------------------------------------------------- colour
def ycc_luma(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb)[..., 0] for f in frames])


@pytest.mark.parametrize("levels", [6, 12, 24])
def test_color_banding_posterises_luma(levels):
    frames = np.stack([texture(seed=s) for s in range(2)])
    assert len(np.unique(ycc_luma(frames))) > 150
    out, lab = D.color_banding(frames, levels)
    y = ycc_luma(out).astype(np.float64)
    step = 255.0 / (levels - 1)
    off = np.abs(y / step - np.rint(y / step)) * step
    assert np.mean(off <= 2.0) > 0.97  # luma sits on the levels (colour round trip moves it by a little)
    bands = np.unique(np.rint(y / step))
    assert len(bands) <= levels
    counts = np.sort(np.unique(y, return_counts=True)[1])[::-1]
    assert (counts >= 0.01 * y.size).sum() <= levels  # about ``levels`` distinct luma values remain ...
    assert counts[:levels].sum() > 0.97 * y.size  # ... holding nearly every pixel
    only(lab, "color_banding", min((48 - levels) / 40.0, 1.0))


def test_color_banding_turns_a_gradient_into_steps():
    ramp = np.linspace(0, 255, 256).round().astype(np.uint8)
    frames = np.tile(ramp[None, None, :, None], (1, 8, 1, 3))  # grey: the chroma path is neutral
    out, _ = D.color_banding(frames, 8)
    row = out[0, 4, :, 0].astype(int)
    assert np.all(out[..., 0] == out[..., 2])  # stays grey
    assert len(np.unique(out)) == 8
    steps = np.diff(row)
    assert np.all(steps >= 0)  # still a ramp ...
    assert np.count_nonzero(steps) == 7 and steps.max() >= 30  # ... of 8 flat bands with jumps of ~36
    widths = np.diff(np.concatenate([[0], np.flatnonzero(steps) + 1, [256]]))
    assert widths.min() >= 15 and widths.max() <= 40
    nothing(D.color_banding(frames, 44)[1])  # 44 levels: too fine to label
    assert len(np.unique(D.color_banding(frames, 44)[0])) == 44


def hsv_sat(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1] for f in frames]).astype(np.float64)


@pytest.mark.parametrize("factor", [0.3, 0.6, 1.4, 1.8])
def test_saturation_scales_hsv_saturation(factor):
    frames = np.stack([texture(seed=s) for s in range(2)])
    s_in = hsv_sat(frames)
    assert 40 < s_in.mean() < 110 and (s_in * factor > 255).mean() < 0.1  # room to scale both ways
    out, lab = D.saturation(frames, factor)
    s_out = hsv_sat(out)
    expect = np.minimum(s_in * factor, 255).mean() / s_in.mean()  # (saturation tops out at 255)
    assert expect == pytest.approx(factor, rel=0.05)
    assert s_out.mean() / s_in.mean() == pytest.approx(expect, rel=0.04)
    v_in, v_out = frames.max(-1).astype(int), out.max(-1).astype(int)
    assert np.abs(v_in - v_out).max() <= 2  # brightness (HSV value) is kept
    inten = (1 - factor) if factor < 1 else (factor - 1) / 1.6
    only(lab, "saturation", inten)


def test_saturation_zero_is_grey_and_small_changes_are_not_labelled():
    frames = texture()[None]
    out, lab = D.saturation(frames, 0.0)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.abs(out[..., 0].astype(int) - frames.max(-1)).max() <= 1  # grey at the HSV value
    only(lab, "saturation", 1.0)
    for f in (0.85, 1.0, 1.2):
        nothing(D.saturation(frames, f)[1])
    out, _ = D.saturation(frames, 1.0)
    assert np.abs(out.astype(int) - frames).max() <= 2  # identity up to HSV rounding


def test_saturation_of_a_picture_with_little_colour_is_labelled_by_the_colour_it_had():
    grey = grade(texture()[None], {"kind": "mono"})
    out, lab = D.saturation(grey, 0.3)
    assert np.array_equal(out, grey)  # nothing to take away ...
    nothing(lab)  # ... so nothing is labelled
    nothing(D.saturation(grey, 2.0)[1])
    faint = grade(texture()[None], {"kind": "tint", "hue": 30, "amount": 0.1})
    m = hsv_sat(faint).mean() / 255
    assert 0.075 <= m < D.SATURATION_COLOURFUL
    only(D.saturation(faint, 0.3)[1], "saturation", 0.7 * m / D.SATURATION_COLOURFUL)


def test_grade_mono_is_grey_at_the_same_luma():
    frames = np.stack([texture(seed=s) for s in range(2)])
    out = grade(frames, {"kind": "mono"})
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.abs(luma(out) - luma(frames)).max() <= 0.5 + 1e-9
    assert grade(frames, None) is frames


@pytest.mark.parametrize("hue", [30, 120, 210, 300])
def test_grade_tint_is_one_hue_at_the_same_luma(hue):
    frames = np.stack([texture(seed=s) for s in range(2)])
    out = grade(frames, {"kind": "tint", "hue": hue, "amount": 0.3})
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV_FULL) for f in out]).astype(np.float64)
    unclipped = (out.min(-1) > 0) & (out.max(-1) < 255)
    coloured = (hsv[..., 1] > 20) & unclipped
    assert coloured.mean() > 0.9
    hue_err = (hsv[..., 0][coloured] * 360 / 256 - hue + 180) % 360 - 180
    assert np.percentile(np.abs(hue_err), 99) <= 6  # one hue (8-bit rounding moves a few dark pixels)
    assert np.abs(luma(out) - luma(frames))[unclipped].max() <= 1.0
    assert 0.1 < hsv[..., 1].mean() / 255 < 0.4  # a muted tint, like a toned photograph


CAMERA = {"seed": 3, "optics": "none", "optics_amount": 0.0, "noise_gain": 0.05, "noise_floor": 1.0, "jpeg": 0}


def test_camera_noise_belongs_to_the_frame_time_and_grows_with_brightness():
    flat = np.stack([np.full((64, 64, 3), level, np.uint8) for level in (30, 30, 200)])
    out = camera(flat, CAMERA, [4.0, 5.0, 4.0]).astype(np.float64)
    noise = out - flat
    assert not np.array_equal(noise[0], noise[1])  # temporal: each frame time has its own noise
    again = camera(flat[:1], CAMERA, [4]).astype(np.float64) - flat[:1]
    assert np.array_equal(again[0], noise[0])  # the same frame time, the same noise (reference and clip agree)
    dark, bright = noise[0].std(), noise[2].std()
    assert abs(dark - np.sqrt(0.05 * 30 + 1)) < 0.3 and abs(bright - np.sqrt(0.05 * 200 + 1)) < 0.4
    assert np.abs(noise[0] - noise[0][..., :1]).max() == 0  # luma noise: the same in R, G and B
    assert camera(flat, None, [0, 1, 2]) is flat


def test_camera_optics_and_jpeg():
    frames = texture()[None]
    quiet = dict(CAMERA, noise_gain=0.0, noise_floor=0.0)
    soft = camera(frames, dict(quiet, optics="soft", optics_amount=0.8), [0])
    sharp = camera(frames, dict(quiet, optics="sharp", optics_amount=0.8), [0])
    jpeg = camera(frames, dict(quiet, jpeg=85), [0])

    def detail(f):
        return np.abs(np.diff(luma(f[0]), axis=1)).mean()

    assert detail(soft) < 0.9 * detail(frames) < 0.9 * detail(sharp)
    assert 0 < np.abs(jpeg.astype(int) - frames).mean() < 6  # light compression: changed, not damaged


# ------------------------------------------------------------------------------------------ encoders
DECODER = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "mpeg2video": "mpeg2video", "mjpeg": "mjpeg",
           "libsvtav1": "libdav1d", "mpeg4": "mpeg4"}


def test_av1_leaves_no_thread_on_the_real_time_scheduler(tmp_path):
    import os

    D.encode(pan_clip(8), tmp_path / "av1.mkv", "av1", 40)
    policies = {os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}
    assert policies == {os.SCHED_OTHER}


def test_every_encoder_is_tested():
    assert set(D.ENCODERS) == {"x264", "x265", "vp9", "mpeg2", "mjpeg", "x264br", "x264qp", "x265br", "vp9br", "av1",
                               "mpeg4"}
    assert {lad.codec for lad in D.ENCODERS.values()} <= set(DECODER)


@pytest.mark.parametrize("name", list(D.ENCODERS))
def test_encode_really_encodes_and_degrades_along_the_ladder(name, tmp_path):
    lad = D.ENCODERS[name]
    frames = pan_clip(8)
    results = {}
    for end, value in (("mild", lad.lo), ("severe", lad.hi)):
        path, lab = D.encode(frames, tmp_path / f"{name}_{end}.mkv", name, value)
        assert path.exists() and not list(tmp_path.glob("*.part*"))
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == DECODER[lad.codec]
        dec = D.decode_rgb(path)
        assert dec.shape == frames.shape and dec.dtype == np.uint8
        results[end] = (psnr(dec, frames), lab, path.stat().st_size)
    (p_mild, lab_mild, size_mild), (p_sev, lab_sev, size_sev) = results["mild"], results["severe"]
    assert p_mild > 30.0, results  # nearly clean at the mild end ...
    assert p_sev < p_mild - 5.0, results  # ... and clearly worse at the severe end
    assert size_sev < size_mild
    nothing(lab_mild)
    assert lab_sev.names() == ["blocking", "ringing"]
    assert lab_sev.intensity[IDX["blocking"]] == lab_sev.intensity[IDX["ringing"]] == 1.0


def test_encoder_labels_ladder_thresholds():
    assert D.ladder_strength("x264", 37) == pytest.approx(0.5)
    assert D.ladder_strength("x264", 60) == 1.0 and D.ladder_strength("x264", 10) == 0.0
    assert D.ladder_strength("x264br", 0.15) == pytest.approx(0.0, abs=1e-9)
    assert D.ladder_strength("x264br", 0.003) == pytest.approx(1.0)
    assert D.ladder_strength("x264br", np.sqrt(0.15 * 0.003)) == pytest.approx(0.5)  # log scale
    mid = D.encoder_labels("mpeg2", 2 + 0.4 * 29)  # c = 0.4: blocking, no ringing yet
    assert mid.names() == ["blocking"] and mid.intensity[IDX["blocking"]] == pytest.approx(0.4)
    assert D.encoder_labels("vp9", 28 + 0.3 * 35).names() == []


# --------------------------------------------------------------------------------------------- vmaf
@pytest.fixture(scope="module")
def vmaf_clips(tmp_path_factory):
    """A 320x180, 5-frame lossless reference and two encodes of it (clean-ish and awful)."""
    from export.references import write_lossless

    d = tmp_path_factory.mktemp("vmaf")
    big = texture(260, 420, seed=9, sigma=2.5)
    ref = np.stack([big[40:220, 20 + 4 * t : 340 + 4 * t] for t in range(5)])
    paths = {"ref": write_lossless(ref, d / "ref.mkv")}
    paths["good"] = D.encode(ref, d / "good.mkv", "mjpeg", 2)[0]
    paths["bad"] = D.encode(ref, d / "bad.mkv", "x264", 51)[0]
    return paths


def test_vmaf_of_a_clip_against_itself_is_about_100(vmaf_clips):
    from export.vmaf import vmaf_frames

    s = vmaf_frames(vmaf_clips["ref"], vmaf_clips["ref"], timeout=60)
    assert s.shape == (5,) and s.dtype == np.float32
    assert s.mean() > 95 and s.min() > 90 and s.max() <= 100.0 + 1e-3


def test_vmaf_ranks_degradations(vmaf_clips):
    from export.vmaf import vmaf_frames

    good = vmaf_frames(vmaf_clips["good"], vmaf_clips["ref"], timeout=60)  # full-range MJPEG, q=2
    bad = vmaf_frames(vmaf_clips["bad"], vmaf_clips["ref"], timeout=60)
    assert good.shape == bad.shape == (5,)
    assert good.mean() > 90  # full range is converted properly: no false penalty
    assert bad.mean() < 50 and bad.mean() < good.mean() - 40


def test_vmaf_failure_is_reported(tmp_path):
    from export.vmaf import vmaf_frames

    with pytest.raises(RuntimeError, match="libvmaf failed"):
        vmaf_frames(tmp_path / "missing.mkv", tmp_path / "missing.mkv", timeout=30)


def test_window_quality_averages_non_overlapping_windows():
    from export.vmaf import window_quality

    per_frame = np.array([100, 90, 80, 70, 60, 50, 40] + [10] * 7 + [99, 99], dtype=np.float32)
    q = window_quality(per_frame, window=7)
    assert q.dtype == np.float32 and q.shape == (2,)  # the incomplete tail is dropped
    assert q == pytest.approx([0.7, 0.1])
    assert window_quality(np.arange(6, dtype=np.float32) * 20, window=3) == pytest.approx([0.2, 0.8])
    clipped = window_quality(np.array([120, 110, -10, -5], dtype=np.float32), window=2)
    assert clipped == pytest.approx([1.0, 0.0])
    assert window_quality(np.ones(3, np.float32), window=7).shape == (0,)
