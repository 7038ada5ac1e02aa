"""``vqa-monitor score FILE --report out.html``: one self-contained HTML file per run (opens offline).

Per file: a summary row, AQS over time over the quality bands, one timeline per artifact, the worst
windows' key frames with their artifact heatmaps (JPEG inlined as ``data:`` URIs), and the same data
as ``vqa-monitor score --json`` inside ``<script type="application/json" id="vqa-data">``. No script
runs: the charts are inline SVG, so the file renders anywhere, also with scripts off.

The key frames come from decoding the file a second time (only the worst windows' frames are kept);
their maps are the engine's own when it localises, else the classical engine's per-fragment
regressions (:mod:`monitor.localise`), else none.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engines.aqs import QUALITY_BANDS
from engines.contract import ARTIFACTS, WINDOW_FRAMES
from engines.sampler import Planes, grid_offsets, planes_from_frame, sample_frame
from monitor.snapshots import ARTIFACT_COLOURS, draw_heatmap, encode_jpeg, planes_to_rgb

WORST_WINDOWS = 4
PICTURE_WIDTH = 480
CHART_W, CHART_H, LANE_H = 900, 200, 46
_BAND_FILL = {"excellent": "#e3f4e3", "good": "#eef8e6", "fair": "#fdf6e0", "poor": "#fde9dc"}


@dataclass
class WorstWindow:
    index: int
    start_s: float
    aqs: float
    dominant: str
    picture: str | None  # data: URI
    heatmap: str | None


def worst_windows(result: Any, localiser: Any = None, count: int = WORST_WINDOWS) -> list[WorstWindow]:
    """The ``count`` lowest-AQS windows of ``result``, with key frames decoded again from its file."""
    order = sorted(range(len(result.windows)), key=lambda i: result.windows[i].aqs)[:count]
    frames = _window_frames(result.source, [result.windows[i].start_s for i in order])
    out = []
    for i in sorted(order, key=lambda i: result.windows[i].aqs):
        window = result.windows[i]
        planes = frames.get(window.start_s)
        picture = heatmap = None
        if planes:
            rgb = planes_to_rgb(planes[-1], PICTURE_WIDTH)
            picture = _data_uri(encode_jpeg(rgb, 80))
            artifact_map = window.artifact_map
            if artifact_map is None and localiser is not None and len(planes) == WINDOW_FRAMES:
                artifact_map = localiser.locate("report", _sample_window(planes))
            if artifact_map is not None:
                heatmap = _data_uri(encode_jpeg(draw_heatmap(rgb, artifact_map), 80))
        dominant = ARTIFACTS[int(np.argmax(window.artifacts * window.intensities))]
        out.append(WorstWindow(i, window.start_s, window.aqs, dominant, picture, heatmap))
    return out


def _window_frames(path: str, starts: Sequence[float]) -> dict[float, list[Planes]]:
    """The 7 frames of each window starting at one of ``starts`` (copies; the rest is not kept)."""
    import av

    wanted = sorted(set(starts))
    found: dict[float, list[Planes]] = {}
    if not wanted:
        return found
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 25)
            for n, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else n / fps
                for start in wanted:
                    frames = found.setdefault(start, [])
                    if t >= start - 1e-6 and len(frames) < WINDOW_FRAMES:
                        p = planes_from_frame(frame)
                        frames.append(Planes(p.y.copy(), p.u.copy(), p.v.copy(), p.full_range))
                if all(len(found.get(s, [])) >= WINDOW_FRAMES for s in wanted):
                    break
    except (av.FFmpegError, OSError):
        pass  # the report then shows the scores without pictures
    return found


def _sample_window(planes: list[Planes]) -> np.ndarray:
    offsets = grid_offsets(planes[0].height, planes[0].width)
    return np.stack([sample_frame(p, offsets) for p in planes])


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------
def _aqs_chart(result: Any) -> str:
    windows = result.windows
    end = max(w.start_s for w in windows) or 1.0
    x = lambda t: t / end * CHART_W  # noqa: E731
    y = lambda v: CHART_H - v * CHART_H  # noqa: E731
    parts, upper = [], 1.0
    for bound, name in QUALITY_BANDS:
        parts.append(f'<rect x="0" y="{y(upper):.1f}" width="{CHART_W}" height="{(upper - bound) * CHART_H:.1f}" '
                     f'fill="{_BAND_FILL.get(name, "#fbdcdc")}"/><text x="4" y="{y(upper) + 12:.1f}" class="band">{name}</text>')
        upper = bound
    points = " ".join(f"{x(w.start_s):.1f},{y(w.aqs):.1f}" for w in windows)
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f5fbf" stroke-width="2"/>')
    return (f'<svg viewBox="0 -2 {CHART_W} {CHART_H + 18}" class="chart" role="img" aria-label="AQS over time">'
            + "".join(parts) + f'<text x="{CHART_W - 4}" y="{CHART_H + 14}" text-anchor="end" class="band">{end:.1f} s</text></svg>')


def _artifact_lanes(result: Any) -> str:
    windows = result.windows
    end = max(w.start_s for w in windows) or 1.0
    lanes = []
    for k, name in enumerate(ARTIFACTS):
        top = k * LANE_H
        points = " ".join(f"{w.start_s / end * CHART_W:.1f},{top + LANE_H - 6 - w.artifacts[k] * (LANE_H - 12):.1f}"
                          for w in windows)
        lanes.append(f'<text x="4" y="{top + 14}" class="band">{name}</text>'
                     f'<line x1="0" x2="{CHART_W}" y1="{top + LANE_H - 6}" y2="{top + LANE_H - 6}" stroke="#ddd"/>'
                     f'<polyline points="{points}" fill="none" stroke="{ARTIFACT_COLOURS[name]}" stroke-width="1.6"/>')
    return (f'<svg viewBox="0 0 {CHART_W} {LANE_H * len(ARTIFACTS)}" class="chart" role="img" '
            f'aria-label="artifact probabilities over time">' + "".join(lanes) + "</svg>")


def _file_section(result: Any, worst: list[WorstWindow]) -> str:
    data = result.to_json()
    e = html.escape
    top = sorted(data["artifacts"].items(), key=lambda kv: kv[1], reverse=True)[:3]
    cards = []
    for w in worst:
        pictures = "".join(f'<figure><img src="{uri}" alt="{e(label)}"><figcaption>{e(label)}</figcaption></figure>'
                           for uri, label in ((w.picture, "key frame"), (w.heatmap, "artifact heatmap")) if uri)
        cards.append(f'<div class="worst"><h4>window {w.index} at {w.start_s:.2f} s: AQS {w.aqs:.2f}, {e(w.dominant)}</h4>'
                     f'<div class="pictures">{pictures or "<p>no picture (file not readable again)</p>"}</div></div>')
    return (f'<section class="file"><h2>{e(data["path"])}</h2>'
            f'<table><tr><th>AQS</th><th>level</th><th>windows</th><th>frames</th><th>decode errors</th><th>leading artifacts</th><th>engine</th></tr>'
            f'<tr><td>{data["aqs"]:.3f}</td><td>{e(data["quality_level"])}</td><td>{len(data["windows"])}</td>'
            f'<td>{data["frames"]}</td><td>{data["decode_errors"]}</td>'
            f'<td>{e(", ".join(f"{k} {v:.0%}" for k, v in top))}</td><td>{e(str(data["engine"].get("engine", "")))}</td></tr></table>'
            f'<h3>AQS over time</h3>{_aqs_chart(result)}<h3>Artifacts over time</h3>{_artifact_lanes(result)}'
            f'<h3>Worst windows</h3>{"".join(cards)}</section>')


def render_report(results: Sequence[Any], worst: Sequence[list[WorstWindow]]) -> str:
    payload = json.dumps([r.to_json() for r in results], allow_nan=False).replace("<", "\\u003c")  # no </script>
    legend = "".join(f'<span><i style="background:{c}"></i>{html.escape(n)}</span>' for n, c in ARTIFACT_COLOURS.items())
    sections = "".join(_file_section(r, w) for r, w in zip(results, worst))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vqa-monitor report</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1f23; }}
table {{ border-collapse: collapse; margin: .5em 0; }} td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
.chart {{ width: 100%; max-width: 900px; display: block; background: #fff; }} .band {{ font-size: 11px; fill: #666; }}
.legend span {{ margin-right: 1em; font-size: .85em; }} .legend i {{ display: inline-block; width: .8em; height: .8em; margin-right: .3em; }}
.pictures {{ display: flex; flex-wrap: wrap; gap: .6em; }} figure {{ margin: 0; }} figure img {{ max-width: 480px; width: 100%; }}
section.file {{ border-top: 2px solid #1d1f23; margin-top: 1.5em; }}
</style></head><body>
<h1>vqa-monitor report</h1><p class="legend">{legend}</p>
{sections}
<script type="application/json" id="vqa-data">{payload}</script>
</body></html>
"""


def write_report(results: Sequence[Any], path: Path, localiser: Any = None) -> None:
    worst = [worst_windows(r, localiser) for r in results]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_report(results, worst), encoding="utf-8")
    tmp.replace(path)
