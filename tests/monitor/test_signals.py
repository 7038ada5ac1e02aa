"""Signal checks on real encoded clips (x264 through PyAV, decoded as the daemon decodes them)."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import clips
from engines.sampler import planes_from_frame
from monitor.signals import ChecksConfig, Debounce, SignalEvent, StreamSignals


def run_clip(path, config: ChecksConfig | None = None):
    checks = StreamSignals(config)
    checks.on_connect(0.0, nominal_fps=clips.FPS)
    events: list[SignalEvent] = []
    lumas = []
    for t, frame in clips.decoded(path):
        events += checks.on_frame(t, planes_from_frame(frame))
        lumas.append(checks.state().luma_mean)
    return checks, events, np.array(lumas)


def transitions(events, check):
    return [(round(e.t, 2), e.active) for e in events if e.check == check]


def test_black_clip_raises_after_min_duration(clip_dir):
    checks, events, lumas = run_clip(clips.make_clip(clip_dir, "black"))
    assert transitions(events, "black") == [(2.0, True)]  # black.min_duration = 2 s
    assert checks.state().black and lumas.max() <= 17
    assert transitions(events, "frozen") == []  # 4 s of black < freeze.min_duration


def test_dark_scene_is_neither_black_nor_frozen(clip_dir):
    checks, events, lumas = run_clip(clips.make_clip(clip_dir, "dark"))
    assert lumas.mean() < 30  # genuinely dark (limited range: black is 16)
    assert events == []
    assert not checks.state().black and not checks.state().frozen


def test_black_clears_after_clear_duration(clip_dir):
    _, events, _ = run_clip(clips.make_clip(clip_dir, "black_then_picture"))
    assert transitions(events, "black") == [(2.0, True), (5.0, False)]  # picture from 4.0 s + 1 s


def test_full_range_black_level():
    grey24 = np.full((272, 480), 24, np.uint8)  # 8 levels above limited-range black, 24 above full-range
    for full_range, black in ((False, True), (True, False)):
        checks = StreamSignals()
        for i in range(100):
            checks.on_frame(i / 25, grey24, full_range=full_range)
        assert checks.state().black is black


def test_frozen_clip_raises(clip_dir):
    checks, events, _ = run_clip(clips.make_clip(clip_dir, "frozen"))
    # min_duration 5 s counted from the first keyframe that re-encodes the picture near-identically (1 s)
    assert transitions(events, "frozen") == [(6.04, True)]
    assert checks.state().frozen and not checks.state().black


@pytest.mark.parametrize("name,crf", [("static_noise", 23), ("static_noise", 30), ("static_noise_light", 23),
                                      ("static_noise_light", 35),
                                      ("slow_pan", 23), ("slow_pan", 30)])
def test_static_and_nearly_static_scenes_are_not_frozen(clip_dir, name, crf):
    checks, events, _ = run_clip(clips.make_clip(clip_dir, name, crf))
    assert events == [], events
    assert checks.live_changes >= 1


def test_freeze_clears_when_the_picture_moves_again(clip_dir):
    _, events, _ = run_clip(clips.make_clip(clip_dir, "frozen_then_live"))
    assert transitions(events, "frozen") == [(6.04, True), (8.0, False)]  # live from 7.0 s + 1 s


def test_identical_frames_from_a_relay_freeze_after_min_duration():
    checks = StreamSignals(ChecksConfig(freeze={"min_duration": 2.0, "clear_duration": 0.5}))
    still = np.random.default_rng(0).integers(16, 235, (272, 480), dtype=np.uint8)
    events = []
    for i in range(75):
        events += checks.on_frame(i / 25, still)
    assert [(round(e.t, 2), e.check, e.active) for e in events] == [(2.0, "frozen", True)]


@pytest.mark.parametrize("stride", [1, 4])
def test_a_decoder_reusing_its_buffer_is_compared_by_content(stride):
    """The checks keep their own copy of the subsampled plane, never a view a decoder overwrites."""
    checks = StreamSignals(ChecksConfig(stride=stride, freeze={"min_duration": 1.0}))
    buffer, rng = np.zeros((64, 64), np.uint8), np.random.default_rng(1)
    for i in range(50):
        buffer[...] = rng.integers(16, 235, buffer.shape)  # a new picture in the same memory
        checks.on_frame(i / 25, buffer)
    assert checks.live_changes > 0 and not checks.state().frozen
    assert checks.state().luma_mean == pytest.approx(buffer[::stride, ::stride].mean())


def test_no_video_timeout_and_recovery():
    checks = StreamSignals(ChecksConfig(no_video={"timeout": 3.0}))
    checks.on_connect(10.0, nominal_fps=25)
    assert checks.tick(12.9) == []
    (event,) = checks.tick(13.0)
    assert event.check == "no_video" and event.active and checks.state().no_video
    (event,) = checks.on_frame(14.0, np.full((64, 64), 100, np.uint8))
    assert event.check == "no_video" and not event.active and not checks.state().no_video
    assert checks.on_disconnect(15.0) == [] and checks.tick(30.0) == []  # disconnected: stream_up reports it


def frames_per_second(frame_times: list[float], now: float, window: float) -> float:
    """The frames that arrived within the ``window`` seconds before ``now``, per second."""
    return sum(now - window < ft <= now for ft in frame_times) / window


def test_frame_rate_measured_and_deviation():
    checks = StreamSignals(ChecksConfig(frame_rate={"min_duration": 2.0, "clear_duration": 1.0}))
    checks.on_connect(0.0, nominal_fps=25)
    y, t, events, frame_times = np.full((64, 64), 100, np.uint8), 0.0, [], []
    for _ in range(150):  # 25 fps for 6 s
        events += checks.on_frame(t, y)
        frame_times.append(t)
        t += 0.04
    assert checks.state().frame_rate == pytest.approx(25.0, rel=0.03)
    assert checks.state().expected_frame_rate == 25.0 and not checks.state().frame_rate_deviation
    for _ in range(60):  # 10 fps for 6 s
        events += checks.on_frame(t, y)
        frame_times.append(t)
        t += 0.1
    assert checks.state().frame_rate == pytest.approx(10.0, rel=0.03)  # +-1 frame in a 5 s window
    assert [(e.check, e.active) for e in events if e.check == "frame_rate_deviation"] == \
        [("frame_rate_deviation", True)]
    assert checks.state().frame_rate_deviation
    checks.tick(t + 2.5)  # frames stop: the rate decays with the window instead of freezing at 10
    window = checks.config.frame_rate.window
    assert checks.state().frame_rate == pytest.approx(frames_per_second(frame_times, t + 2.5, window))
    assert 24 <= checks.state().frame_rate * window <= 25  # 10 fps over half the window, +-1 frame at its edge
    checks.tick(t + 6)
    assert checks.state().frame_rate == 0.0
    assert StreamSignals(ChecksConfig(frame_rate={"expected": 30})).state().expected_frame_rate == 30


def test_bitrate_from_packet_sizes():
    checks = StreamSignals(ChecksConfig(bitrate={"window": 2.0}))
    assert checks.bitrate() is None
    times = np.arange(0, 4, 0.04)
    checks.on_packets(times, [5000] * len(times))  # 5000 B x 25/s = 1 Mbit/s
    assert checks.bitrate() == pytest.approx(1_000_000, rel=0.03)
    assert checks.state().bitrate_bps == pytest.approx(1_000_000, rel=0.03)
    checks.on_packet(4.0, 0)
    assert checks.bitrate(t=7.0) == 0.0  # nothing arrived for longer than the window


def test_bitrate_of_a_real_clip(clip_dir):
    import av

    path = clips.make_clip(clip_dir, "slow_pan")
    checks = StreamSignals()
    packets: list[tuple[float, int]] = []
    with av.open(str(path)) as src:
        for index, packet in enumerate(src.demux(src.streams.video[0])):
            if packet.size:
                checks.on_packet(index / clips.FPS, packet.size)
                packets.append((index / clips.FPS, packet.size))
    window, last = checks.config.bitrate.window, packets[-1][0]
    assert last > window  # the clip is longer than the window: only its last seconds count
    in_window = sum(size for t, size in packets if t > last - window)
    assert checks.bitrate() == pytest.approx(8 * in_window / window)


def test_debounce_needs_uninterrupted_duration():
    deb = Debounce(raise_after=2.0, clear_after=1.0)
    assert deb.update(0.0, True) is None and deb.update(1.9, True) is None
    assert deb.update(1.95, False) is None  # interrupted: starts over
    assert deb.update(2.0, True) is None and deb.update(4.0, True) is True
    assert deb.update(4.5, False) is None and deb.update(5.5, False) is False


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        ChecksConfig(black={"level": 0.1})
    with pytest.raises(ValidationError):
        ChecksConfig(freeze={"min_duration": 0})
    assert ChecksConfig.model_validate({"stride": 2, "freeze": {"min_duration": 8}}).freeze.min_duration == 8
