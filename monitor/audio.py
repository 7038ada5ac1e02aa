"""Audio loudness of a stream's audio track: settings, readings, and the meter (FFmpeg's filters in C).

The reader decodes the first audio track beside the video (:mod:`monitor.ingest`) and pushes every
decoded frame into an :class:`AudioMeter`: a PyAV filter graph ``abuffer -> ebur128 -> astats ->
abuffersink``. FFmpeg's ``ebur128`` measures ITU-R BS.1770 / EBU R128 loudness and cuts the audio
into 100 ms blocks, each carrying its values in ``frame.metadata`` (``lavfi.r128.M``/``S``/``I``/``LRA``
and the true peak); ``astats`` (reset every block) adds the block's sample peak, for the clipping
check. So the meter yields one :class:`AudioReading` per 100 ms of audio; no sample is converted
to Python. What the readings mean for alarms is :mod:`monitor.audio_checks`.

As FFmpeg defines them: momentary loudness is over the last 400 ms, short-term over the last 3 s;
integrated loudness and loudness range are over everything metered since the audio was opened
(a reconnect restarts them; a looped file keeps them across its restarts), and so is the true peak
(R128's "maximum true peak level"). ebur128 reports -70 LUFS integrated before any block passes its
gate. In digital silence its running sums leave rounding residue: momentary and short-term loudness
then read far below -120 LUFS, or NaN where the residue is negative (an Opus stream does this after
every tone); the meter reads both as :data:`SILENCE_LUFS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

from pydantic import Field

from monitor.strict import Strict

MOMENTARY_S, SHORT_TERM_S = 0.4, 3.0
NO_GATED_BLOCK_LUFS = -70.0  # ebur128's integrated loudness before any block passed the gate
SILENCE_LUFS = -120.7  # the loudness of a mean square of 1e-12: what digital silence reads


# ------------------------------------------------------------------------------------------------
# Settings: the `checks.audio` section
# ------------------------------------------------------------------------------------------------
class SilenceConfig(Strict):
    """Silence: the momentary loudness stays below ``level``."""

    enabled: bool = Field(True, description="the silence check (`vqa_audio_silence`)")
    level: float = Field(-60.0, ge=-120.0, le=0.0, description=(
        "LUFS: audio whose momentary (400 ms) loudness is below this is silent; digital silence reads -120.7"))
    min_duration: float = Field(5.0, ge=0.0, description="seconds silent before `vqa_audio_silence` is 1")
    clear_duration: float = Field(1.0, ge=0.0, description="seconds not silent before `vqa_audio_silence` is 0")


class LoudnessConfig(Strict):
    """Loudness off target: the chosen loudness is further than ``tolerance`` from ``target``."""

    enabled: bool = Field(True, description="the loudness check (`vqa_audio_loudness_out_of_range`)")
    target: float = Field(-23.0, ge=-70.0, le=0.0, description=(
        "target loudness in LUFS: -23 for EBU R128; -24 for ATSC A/85 (LKFS, the same unit)"))
    tolerance: float = Field(5.0, gt=0.0, le=40.0, description=(
        "LU either side of `target` that count as on target (R128 allows +-1 LU for the integrated "
        "loudness of a live programme; short-term loudness of normal programme varies more)"))
    measure: str = Field("short_term", pattern="^(short_term|integrated)$", description=(
        "`short_term` (the last 3 s: an alarm for sustained loudness off target) or `integrated` "
        "(everything since the audio opened: R128 compliance of the programme)"))
    min_duration: float = Field(30.0, ge=0.0, description=(
        "seconds off target before `vqa_audio_loudness_out_of_range` is 1 (silence does not count: it has its "
        "own check)"))
    clear_duration: float = Field(10.0, ge=0.0, description=(
        "seconds on target before `vqa_audio_loudness_out_of_range` is 0"))


class ClippingConfig(Strict):
    """Clipping: the sample peak of 100 ms blocks reaches ``peak_level``."""

    enabled: bool = Field(True, description="the clipping check (`vqa_audio_clipping`)")
    peak_level: float = Field(-1.0, ge=-20.0, le=6.0, description=(
        "dBFS: a 100 ms block whose sample peak reaches this is clipped. Not 0: a lossy codec pulls a clipped "
        "source's peaks below full scale (a clipped tone through AAC at 128 kb/s peaks at -0.3 to -0.45 dBFS), "
        "and R128 allows at most -1 dBTP"))
    min_duration: float = Field(1.0, ge=0.0, description=(
        "seconds of clipped blocks in a row before `vqa_audio_clipping` is 1"))
    clear_duration: float = Field(2.0, ge=0.0, description="seconds without clipping before `vqa_audio_clipping` is 0")


class AudioMissingConfig(Strict):
    """Audio missing: an expected audio track is absent, or delivers no audio."""

    timeout: float = Field(5.0, gt=0.0, description=(
        "seconds connected without decoded audio (counted from the open or the last audio) before "
        "`vqa_audio_missing` is 1; it clears with the next audio"))


class AudioChecksConfig(Strict):
    """The ``checks.audio`` section."""

    enabled: bool = Field(True, description=(
        "decode and meter the first audio track of sources that have one (false: audio is ignored, no audio "
        "series)"))
    expected: bool = Field(False, description=(
        "the stream must carry audio: without an audio track `vqa_audio_missing` goes to 1. Streams that are "
        "not expected to have audio and have none get no audio series"))
    true_peak: bool = Field(True, description=(
        "measure the true peak (`vqa_audio_true_peak_dbtp`, 4x oversampled): about 0.3-0.4 % of a core per stereo "
        "48 kHz track, a third of the audio's cost; false drops that series"))
    silence: SilenceConfig = Field(SilenceConfig(), description="silence: momentary loudness below `level`")
    loudness: LoudnessConfig = Field(LoudnessConfig(), description=(
        "loudness further than `tolerance` LU from `target` (EBU R128 by default)"))
    clipping: ClippingConfig = Field(ClippingConfig(), description="the sample peak reaches full scale")
    missing: AudioMissingConfig = Field(AudioMissingConfig(), description=(
        "with `expected: true`: no audio track, or no decoded audio for `timeout` seconds"))


# ------------------------------------------------------------------------------------------------
# Readings
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioInfo:
    """The audio track a source opened with (for logs)."""

    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class AudioReading:
    """One 100 ms block: loudness in LUFS, range in LU, peaks in dBFS/dBTP (None: not measured).

    ``metered_s`` is the audio metered so far, so that a check can skip values whose window
    (400 ms momentary, 3 s short-term) is not full yet.
    """

    momentary: float
    short_term: float
    integrated: float
    loudness_range: float
    true_peak: float | None
    sample_peak: float | None
    metered_s: float

    @property
    def momentary_ready(self) -> bool:
        return self.metered_s >= MOMENTARY_S

    @property
    def short_term_ready(self) -> bool:
        return self.metered_s >= SHORT_TERM_S

    @property
    def integrated_ready(self) -> bool:
        return self.integrated > NO_GATED_BLOCK_LUFS


def _db(linear: float) -> float | None:
    return 20.0 * math.log10(linear) if linear > 0.0 else None


def _dbfs(text: str | None) -> float | None:
    """astats' dBFS text; ``-inf`` (a silent block) is None."""
    if text is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _window_loudness(text: str) -> float:
    """ebur128's momentary or short-term loudness; rounding residue of silence (NaN, or below
    :data:`SILENCE_LUFS`) reads as :data:`SILENCE_LUFS`."""
    value = float(text)
    return value if value > SILENCE_LUFS else SILENCE_LUFS  # NaN compares false


def reading_from_metadata(metadata: Any, metered_s: float) -> AudioReading:
    """An :class:`AudioReading` from one ebur128 + astats block's ``frame.metadata``."""
    true_peak = metadata.get("lavfi.r128.true_peak")
    return AudioReading(
        momentary=_window_loudness(metadata["lavfi.r128.M"]),
        short_term=_window_loudness(metadata["lavfi.r128.S"]),
        integrated=float(metadata["lavfi.r128.I"]),
        loudness_range=float(metadata["lavfi.r128.LRA"]),
        true_peak=_db(float(true_peak)) if true_peak is not None else None,
        sample_peak=_dbfs(metadata.get("lavfi.astats.Overall.Peak_level")),
        metered_s=metered_s,
    )


# ------------------------------------------------------------------------------------------------
# The meter
# ------------------------------------------------------------------------------------------------
class AudioMeter:
    """ebur128 (with true peak) and astats over one audio track, fed with PyAV ``AudioFrame`` s.

    The graph is built from the first frame and rebuilt when the sample format, rate or channel
    layout changes (which restarts the integrated values). :meth:`push` returns the readings of the
    blocks completed by that frame (mostly none or one).
    """

    SAMPLE_PEAKS = ("astats", "metadata=1:reset=1:measure_perchannel=none:measure_overall=Peak_level")

    def __init__(self, true_peak: bool = True) -> None:
        loudness = "metadata=1:framelog=quiet" + (":peak=true" if true_peak else "")
        self.filters = (("ebur128", loudness), self.SAMPLE_PEAKS)
        self._graph: Any = None
        self._shape: tuple[str, int, str] | None = None
        self._samples = 0  # pushed since the graph was built: the pts of the next frame
        self._metered = 0  # samples that came out in blocks
        self._rate = 0

    def push(self, frame: Any) -> list[AudioReading]:
        shape = (frame.format.name, int(frame.sample_rate), frame.layout.name)
        if shape != self._shape:
            self._build(frame, shape)
        # Timestamps of our own: live sources have none or jumping ones, and ebur128 needs none.
        frame.pts = self._samples
        self._samples += frame.samples
        self._graph.push(frame)
        return list(self._pull())

    def _pull(self) -> Iterator[AudioReading]:
        import av

        while True:
            try:
                block = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            self._metered += block.samples
            yield reading_from_metadata(block.metadata, self._metered / self._rate)

    def _build(self, frame: Any, shape: tuple[str, int, str]) -> None:
        import av
        from fractions import Fraction

        graph = av.filter.Graph()
        nodes = [graph.add_abuffer(format=shape[0], sample_rate=shape[1], layout=shape[2],
                                   time_base=Fraction(1, shape[1]))]
        nodes += [graph.add(name, args) for name, args in self.filters]
        nodes.append(graph.add("abuffersink"))
        for upstream, downstream in zip(nodes, nodes[1:]):
            upstream.link_to(downstream)
        graph.configure()
        self._graph, self._shape, self._rate = graph, shape, shape[1]
        self._samples = self._metered = 0