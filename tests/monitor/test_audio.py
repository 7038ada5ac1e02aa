"""The audio meter and checks on real files: PyAV + FFmpeg's ebur128 against the ffmpeg CLI's own measurement."""
from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import av
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from monitor.audio import SILENCE_LUFS, AudioChecksConfig, AudioMeter, AudioReading
from monitor.audio_checks import StreamAudio
from monitor.config import ConfigError, parse_config
from monitor.metrics import Metrics
from servers import ffmpeg_exe, make_clip

TONE = "sine=frequency=1000:sample_rate=48000"


@pytest.fixture(scope="session")
def audio_clips(clip_dir: Path) -> dict[str, Path]:
    """3 s clips (320x180 video + stereo AAC): a tone, a tone that drops to silence after 1.5 s, a clipping
    tone (+24 dB into 16 bits), and none."""
    small = {"seconds": 3, "size": "320x180"}
    return {
        "tone": make_clip(clip_dir / "tone.ts", audio=TONE, **small),
        "drop": make_clip(clip_dir / "tone_drop.ts", audio=f"{TONE}:duration=1.5,apad", **small),
        "loud": make_clip(clip_dir / "tone_loud.ts", audio=f"{TONE},volume=24dB", **small),
        "none": make_clip(clip_dir / "noaudio_180p.ts", **small),
    }


def ffmpeg_r128(path: Path) -> dict[str, float]:
    """The ffmpeg CLI's own EBU R128 summary of the file's audio: I (LUFS), LRA (LU), true peak (dBFS)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-vn", "-af",
                          "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    summary = out.stderr.rsplit("Summary:", 1)[1]
    return {"I": float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),
            "LRA": float(re.search(r"LRA:\s+(-?[\d.]+) LU", summary).group(1)),
            "TP": float(re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))}


def meter_file(path: Path) -> list[AudioReading]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        meter = AudioMeter()
        readings: list[AudioReading] = []
        for frame in container.decode(stream):
            readings += meter.push(frame)
    return readings


def test_meter_matches_ffmpeg_ebur128(audio_clips):
    for name in ("tone", "drop", "loud"):
        readings = meter_file(audio_clips[name])
        assert readings and abs(readings[-1].metered_s - 3.0) < 0.15, name  # one reading per 100 ms
        assert all(abs(b.metered_s - a.metered_s - 0.1) < 1e-6 for a, b in zip(readings, readings[1:]))
        reference = ffmpeg_r128(audio_clips[name])
        last = readings[-1]
        assert abs(last.integrated - reference["I"]) <= 0.5, (name, last, reference)
        assert abs(last.loudness_range - reference["LRA"]) <= 0.5, (name, last, reference)
        assert abs(last.true_peak - reference["TP"]) <= 0.5, (name, last, reference)
    tone = meter_file(audio_clips["tone"])
    assert -23.0 < tone[-1].momentary < -19.0  # lavfi's sine is 1/8 of full scale, on two channels
    assert all(r.sample_peak < -3.0 for r in tone if r.sample_peak is not None)
    loud = meter_file(audio_clips["loud"])
    assert min(r.sample_peak for r in loud) > -1.0  # clipped: every block near full scale
    drop = meter_file(audio_clips["drop"])
    assert drop[-1].momentary < -100.0 and drop[-1].sample_peak is None  # digital silence


def test_meter_without_true_peak(audio_clips):
    with av.open(str(audio_clips["tone"])) as container:
        meter = AudioMeter(true_peak=False)
        readings = [r for frame in container.decode(container.streams.audio[0]) for r in meter.push(frame)]
    assert readings and all(r.true_peak is None for r in readings)
    assert readings[-1].integrated == pytest.approx(ffmpeg_r128(audio_clips["tone"])["I"], abs=0.5)


def _feed(config: AudioChecksConfig, readings: list[AudioReading]) -> tuple[StreamAudio, list]:
    audio = StreamAudio(config)
    events: list = []
    for r in readings:
        events += audio.on_reading(r.metered_s, r)
    return audio, events


def _config(**sections) -> AudioChecksConfig:
    quick = {"silence": {"min_duration": 0.5, "clear_duration": 0.2},
             "loudness": {"min_duration": 0.5, "clear_duration": 0.2},
             "clipping": {"min_duration": 0.3, "clear_duration": 0.2}}
    for key, value in sections.items():
        quick[key] = {**quick.get(key, {}), **value} if isinstance(value, dict) else value
    return AudioChecksConfig.model_validate(quick)


def test_silence_reads_as_silence_after_opus(tmp_path):
    """ebur128 leaves rounding residue in digital silence: after an Opus-coded tone its momentary loudness
    is NaN (negative energy) and its short-term loudness too after 3 s; read as silence, not as NaN."""
    opus = tmp_path / "drop.mka"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"{TONE}:duration=1.5,apad",
                    "-t", "6", "-ac", "2", "-c:a", "libopus", str(opus)], check=True, timeout=60)
    readings = meter_file(opus)
    silent = [r for r in readings if r.metered_s > 2.0]
    assert len(silent) >= 35 and all(r.momentary == SILENCE_LUFS for r in silent), silent
    assert all(r.short_term == SILENCE_LUFS for r in readings if r.metered_s > 4.6)
    assert not [r for r in readings if math.isnan(r.momentary) or math.isnan(r.short_term)]
    audio, events = _feed(_config(), readings)
    assert audio.state().silence and audio.state().momentary == SILENCE_LUFS


def test_silence_after_the_tone_drops(audio_clips):
    audio, events = _feed(_config(), meter_file(audio_clips["drop"]))
    raised = [e for e in events if e.check == "audio_silence" and e.active]
    assert len(raised) == 1 and 1.9 <= raised[0].t <= 2.6, raised  # 1.5 s tone, 400 ms window, 0.5 s hold
    state = audio.state()
    assert state.active and state.silence and not state.clipping and not state.missing
    tone, tone_events = _feed(_config(), meter_file(audio_clips["tone"]))
    assert not tone.state().silence and not [e for e in tone_events if e.check == "audio_silence"]


def test_clipping_only_on_the_loud_tone(audio_clips):
    loud, events = _feed(_config(), meter_file(audio_clips["loud"]))
    assert loud.state().clipping and any(e.check == "audio_clipping" and e.active for e in events)
    tone, _ = _feed(_config(), meter_file(audio_clips["tone"]))
    assert not tone.state().clipping


def test_loudness_against_the_target(audio_clips):
    readings = meter_file(audio_clips["tone"])  # about -21 LUFS short-term after 3 s
    last = readings[-1]  # the tone goes on: 1 s more of its last block
    readings = readings + [AudioReading(last.momentary, last.short_term, last.integrated, last.loudness_range,
                                        last.true_peak, last.sample_peak, last.metered_s + 0.1 * i) for i in range(1, 11)]
    on, _ = _feed(_config(loudness={"target": -21.0, "tolerance": 1.0}), readings)
    assert not on.state().loudness_out_of_range
    assert on.state().short_term == pytest.approx(readings[-1].short_term)
    off, events = _feed(_config(loudness={"target": -24.0, "tolerance": 1.0}), readings)  # an ATSC A/85 target
    assert off.state().loudness_out_of_range
    assert [e.detail for e in events if e.check == "audio_loudness_out_of_range"][0]["target_lufs"] == -24.0
    integrated, _ = _feed(_config(loudness={"target": -24.0, "tolerance": 1.0, "measure": "integrated"}), readings)
    assert integrated.state().loudness_out_of_range


def test_missing_audio_only_when_expected():
    expected = StreamAudio(_config(expected=True, missing={"timeout": 2.0}))
    assert expected.state().active and not expected.state().missing  # series from the start
    assert expected.on_open(10.0, None) == []
    assert expected.tick(11.0) == [] and not expected.state().missing
    (event,) = expected.tick(12.5)
    assert event.check == "audio_missing" and event.active and event.detail["audio_track"] is False
    assert expected.state().missing
    assert [e.check for e in expected.on_disconnect(13.0)] == ["audio_missing"]
    plain = StreamAudio(_config())
    plain.on_open(10.0, None)
    assert plain.tick(100.0) == [] and not plain.state().active  # no audio, none expected: no series


def test_audio_series_only_for_streams_with_audio():
    metrics = Metrics(CollectorRegistry())
    video_only, with_audio = metrics.stream("cam"), metrics.stream("mic")
    metrics.publish_audio(video_only, StreamAudio(_config()).state())
    audio = StreamAudio(_config())
    audio.on_reading(0.5, AudioReading(-20.0, -20.5, -21.0, 1.5, -17.0, -18.0, 3.5))
    metrics.publish_audio(with_audio, audio.state())
    with_audio.audio_decode_errors.inc(0)
    text = generate_latest(metrics.registry).decode()
    audio_lines = [line for line in text.splitlines() if line.startswith("vqa_audio")]
    assert audio_lines and not [line for line in audio_lines if 'stream="cam"' in line]
    assert 'vqa_audio_loudness_short_term_lufs{stream="mic"} -20.5' in text
    assert 'vqa_audio_silence{stream="mic"} 0.0' in text and 'vqa_audio_missing{stream="mic"}' not in text
    assert 'vqa_audio_decode_errors_total{stream="mic"} 0.0' in text
    metrics.remove_stream("mic")
    assert "vqa_audio" not in "\n".join(line for line in generate_latest(metrics.registry).decode().splitlines()
                                         if not line.startswith("#"))


def test_checks_audio_config_merges_per_stream():
    config = parse_config(
        "checks: {audio: {silence: {level: -50}, loudness: {target: -24}}}\n"
        "streams:\n"
        "  - {name: a, url: 'lavfi:testsrc2', checks: {audio: {expected: true, silence: {min_duration: 2}}}}\n"
        "  - {name: b, url: 'lavfi:testsrc2'}\n")
    a, b = (s.checks.audio for s in config.streams)
    assert a.expected and a.silence.level == -50 and a.silence.min_duration == 2 and a.loudness.target == -24
    assert not b.expected and b.silence.level == -50 and b.silence.min_duration == 5.0
    with pytest.raises(ConfigError) as err:
        parse_config("checks: {audio: {loudness: {measure: momentary}, silense: {}}}\nstreams: []\n")
    problems = "\n".join(err.value.problems)
    assert "checks.audio.loudness.measure" in problems and "checks.audio.silense: unknown key" in problems


# ------------------------------------------------------------------------------------------------
# The real daemon: a live HLS playlist, looped files and an RTSP stream carrying audio
# ------------------------------------------------------------------------------------------------
QUICK_AUDIO_CHECKS = {"audio": {"silence": {"min_duration": 1.0, "clear_duration": 0.5},
                                "clipping": {"min_duration": 0.5, "clear_duration": 0.5},
                                "missing": {"timeout": 2.0}}}


@pytest.fixture(scope="session")
def live_audio_clips(clip_dir: Path) -> dict[str, Path]:
    """6 s clips with a keyframe every second (HLS segments): 3 s of tone then 3 s of silence; a clipping tone."""
    size = {"seconds": 6, "size": "320x180"}
    return {"drop": make_clip(clip_dir / "tone_drop_6s.ts", audio=f"{TONE}:duration=3,apad", **size),
            "loud": make_clip(clip_dir / "tone_loud_6s.ts", audio=f"{TONE},volume=24dB", **size)}


def _audio_series(scrape, stream: str) -> list[str]:
    return [name for (name, labels) in scrape.samples if name.startswith("vqa_audio")
            and dict(labels).get("stream") == stream]


@pytest.mark.slow
def test_daemon_meters_hls_and_file_audio(daemon, hls_server, live_audio_clips, audio_clips):
    """HLS with a tone that drops to silence, a clipping file, an expected but missing track, and a
    video-only stream that gets no audio series; loudness against the ffmpeg CLI's measurement."""
    hls = hls_server(clip=live_audio_clips["drop"], audio=True)
    d = daemon([
        {"name": "hls", "url": hls.url},
        {"name": "loud", "url": str(live_audio_clips["loud"])},
        {"name": "mute", "url": str(audio_clips["none"]), "checks": {"audio": {"expected": True}}},
        {"name": "video", "url": str(audio_clips["none"])},
    ], checks=QUICK_AUDIO_CHECKS)
    d.wait_value("vqa_audio_silence", lambda v: v == 1, timeout=45, stream="hls")
    d.wait_value("vqa_audio_clipping", lambda v: v == 1, timeout=20, stream="loud")
    d.wait_value("vqa_audio_missing", lambda v: v == 1, timeout=20, stream="mute")
    # the HLS stream's tone comes back: silence clears; momentary loudness is the tone's again
    d.wait_value("vqa_audio_silence", lambda v: v == 0, timeout=20, stream="hls")
    drop = ffmpeg_r128(live_audio_clips["drop"])["I"]  # joined part-way: see test_daemon_meters_rtsp_audio
    d.wait_value("vqa_audio_loudness_integrated_lufs", lambda v: abs(v - drop) <= 0.5, timeout=30, stream="hls")
    scrape = d.scrape()
    # integrated loudness gates the silence out: the whole file's, as ffmpeg measures it
    for stream, clip in (("hls", live_audio_clips["drop"]), ("loud", live_audio_clips["loud"])):
        reference = ffmpeg_r128(clip)
        integrated = scrape.get("vqa_audio_loudness_integrated_lufs", stream=stream)
        assert integrated is not None and abs(integrated - reference["I"]) <= 0.5, (stream, integrated, reference)
        assert scrape.get("vqa_audio_true_peak_dbtp", stream=stream) == pytest.approx(reference["TP"], abs=0.5)
        assert scrape.get("vqa_audio_decode_errors_total", stream=stream) == 0
        assert scrape.get("vqa_audio_missing", stream=stream) is None  # not expected: no such series
    assert scrape.get("vqa_audio_clipping", stream="hls") == 0
    assert scrape.get("vqa_audio_silence", stream="mute") == 0 and _audio_series(scrape, "mute") == [
        "vqa_audio_silence", "vqa_audio_loudness_out_of_range", "vqa_audio_clipping", "vqa_audio_missing"]
    assert _audio_series(scrape, "video") == []
    assert scrape.get("vqa_windows_scored_total", stream="video") >= 1  # video-only streams as before
    events = d.events()
    assert any(e.get("event") == "signal_raised" and e.get("check") == "audio_silence" and e.get("stream") == "hls"
               for e in events)


@pytest.mark.slow
def test_daemon_meters_rtsp_audio(rtsp_server, daemon, live_audio_clips):
    """RTSP with the clip's audio as a second RTP payload (Opus): a tone that drops to silence."""
    server = rtsp_server(clip=live_audio_clips["drop"], audio=True)
    d = daemon([{"name": "cam", "url": server.url, "checks": {"audio": {"expected": True}}}],
               checks=QUICK_AUDIO_CHECKS)
    d.wait_value("vqa_audio_silence", lambda v: v == 1, timeout=40, stream="cam")
    d.wait_value("vqa_audio_silence", lambda v: v == 0, timeout=20, stream="cam")
    reference = ffmpeg_r128(live_audio_clips["drop"])
    # the live loop is joined part-way, so the first blocks straddling tone and silence weigh more than in
    # the whole file: integrated loudness reaches the file's own figure as whole loops accumulate
    d.wait_value("vqa_audio_loudness_integrated_lufs", lambda v: abs(v - reference["I"]) <= 0.5, timeout=30, stream="cam")
    scrape = d.scrape()
    assert scrape.get("vqa_audio_missing", stream="cam") == 0
    assert scrape.get("vqa_audio_clipping", stream="cam") == 0
    assert scrape.get("vqa_windows_scored_total", stream="cam") >= 1
