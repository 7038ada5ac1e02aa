"""Grafana dashboards as code (PyPI ``grafana-foundation-sdk``) -> committed JSON in grafana/dashboards/.

    .venv/bin/python grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python grafana/build_dashboards.py --check  # exit 1 if the committed files differ

Two dashboards: ``vqa-overview`` (every stream: AQS, quality state, up, engine) and ``vqa-stream`` (one
stream chosen by ``$stream``: AQS, artifacts, latency quantiles, fps, bitrate, reconnects, drops,
black/freeze). Every panel queries the datasource variable ``$datasource`` (type prometheus), so the
dashboards import into any Grafana; grafana/provisioning/ provisions both.

:func:`panel_queries` lists every panel's PromQL with the Grafana variables expanded for a stream; the
end-to-end test runs each against a real Prometheus scraping the real daemon.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as mc
from grafana_foundation_sdk.models import dashboard as m

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DS = m.DataSourceRef(type_val="prometheus", uid="${datasource}")
QUALITY_STATES = {"0": ("ok", "green"), "1": ("warn", "yellow"), "2": ("crit", "red")}
UP_STATES = {"0": ("down", "red"), "1": ("up", "green")}
FLAG_STATES = {"0": ("no", "green"), "1": ("yes", "red")}


def _q(expr: str, legend: str, ref: str, instant: bool = False) -> gprom.Dataquery:
    q = gprom.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    return q.instant() if instant else q.range()


def _legend(placement: mc.LegendPlacement = mc.LegendPlacement.BOTTOM) -> gcommon.VizLegendOptions:
    return (gcommon.VizLegendOptions().show_legend(True).display_mode(mc.LegendDisplayMode.LIST)
            .placement(placement))


def _last() -> gcommon.ReduceDataOptions:
    return gcommon.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _targets(panel, queries: Iterable[tuple[str, str]], **kw):
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_q(expr, legend, chr(ord("A") + index), **kw))
    return panel


def _mappings(states: dict[str, tuple[str, str]]) -> list[m.ValueMap]:
    return [m.ValueMap(options={k: m.ValueMappingResult(text=t, color=c, index=i)
                                for i, (k, (t, c)) in enumerate(states.items())})]


def _thresholds(*steps: tuple[float | None, str]) -> gdash.ThresholdsConfig:
    return gdash.ThresholdsConfig().mode(m.ThresholdsMode.ABSOLUTE).steps(
        [m.Threshold(value=v, color=c) for v, c in steps])


AQS_THRESHOLDS = ((None, "red"), (0.4, "yellow"), (0.6, "green"))


def _ts(title: str, queries, unit: str = "none", h: int = 8, w: int = 12, **kw) -> timeseries.Panel:
    p = (timeseries.Panel().title(title).datasource(DS).unit(unit).height(h).span(w).fill_opacity(10)
         .legend(_legend()))
    for key, value in kw.items():
        p = getattr(p, key)(value)
    return _targets(p, queries)


def _stat(title: str, queries, states=None, unit: str = "none", h: int = 6, w: int = 6, thresholds=None):
    p = (stat.Panel().title(title).datasource(DS).unit(unit).height(h).span(w)
         .reduce_options(_last()).graph_mode(mc.BigValueGraphMode.NONE))
    if states:
        p = p.mappings(_mappings(states)).color_scheme(
            gdash.FieldColor().mode(m.FieldColorModeId.THRESHOLDS))
        p = p.thresholds(_thresholds(*[(None if i == 0 else float(k), c)
                                       for i, (k, (_, c)) in enumerate(states.items())]))
    elif thresholds:
        p = p.thresholds(_thresholds(*thresholds))
    return _targets(p, queries, instant=True)


def _timeline(title: str, queries, states, h: int = 7, w: int = 24):
    p = (statetimeline.Panel().title(title).datasource(DS).height(h).span(w).mappings(_mappings(states))
         .show_value(mc.VisibilityMode.NEVER).legend(_legend()))
    p = p.thresholds(_thresholds(*[(None if i == 0 else float(k), c) for i, (k, (_, c)) in enumerate(states.items())]))
    p = p.color_scheme(gdash.FieldColor().mode(m.FieldColorModeId.THRESHOLDS))
    return _targets(p, queries)


def _datasource_variable() -> gdash.DatasourceVariable:
    return gdash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def overview() -> gdash.Dashboard:
    d = (gdash.Dashboard("vqa-monitor: overview").uid("vqa-overview").tags(["vqa-monitor"])
         .refresh("10s").time("now-1h", "now").timezone("browser").with_variable(_datasource_variable()))
    d = d.with_row(gdash.Row("Now"))
    d = d.with_panel(_stat("AQS", [("vqa_aqs", "{{stream}}")], unit="percentunit", w=8, thresholds=AQS_THRESHOLDS))
    d = d.with_panel(_stat("Quality state", [("vqa_quality_state", "{{stream}}")], QUALITY_STATES, w=8))
    d = d.with_panel(_stat("Stream up", [("vqa_stream_up", "{{stream}}")], UP_STATES, w=8))
    d = d.with_panel(_targets(
        table.Panel().title("Engine").datasource(DS).height(5).span(12).show_header(True),
        [("vqa_engine_info", "{{engine}} {{model}} {{provider}}")], instant=True))
    d = d.with_panel(_stat("Windows scored / s (all streams)",
                           [("sum(rate(vqa_windows_scored_total[$__rate_interval]))", "windows/s")], w=6, h=5))
    d = d.with_panel(_stat("Streams with an alert signal",
                           [("count(vqa_black == 1 or vqa_frozen == 1 or vqa_no_video == 1 or vqa_stream_up == 0 "
                             "or vqa_hls_playlist_stale == 1) or vector(0)",
                             "streams")], w=6, h=5, thresholds=((None, "green"), (1, "red"))))
    d = d.with_panel(_stat("Streams with an audio alarm",
                           [("count(vqa_audio_missing == 1 or vqa_audio_silence == 1 or vqa_audio_clipping == 1 "
                             "or vqa_audio_loudness_out_of_range == 1) or vector(0)", "streams")],
                           w=6, h=5, thresholds=((None, "green"), (1, "red"))))
    d = d.with_row(gdash.Row("History"))
    d = d.with_panel(_ts("AQS by stream", [("vqa_aqs", "{{stream}}")], unit="percentunit", w=24, min=0, max=1))
    d = d.with_panel(_timeline("Quality state by stream", [("vqa_quality_state", "{{stream}}")], QUALITY_STATES))
    d = d.with_panel(_timeline("Stream up", [("vqa_stream_up", "{{stream}}")], UP_STATES))
    return d


def per_stream() -> gdash.Dashboard:
    s = 'stream="$stream"'
    stream_var = (gdash.QueryVariable("stream").label("Stream").datasource(DS)
                  .query({"query": "label_values(vqa_stream_up, stream)", "refId": "StreamVariable"})
                  .refresh(m.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(m.VariableSort.ALPHABETICAL_ASC))
    d = (gdash.Dashboard("vqa-monitor: stream").uid("vqa-stream").tags(["vqa-monitor"])
         .refresh("10s").time("now-1h", "now").timezone("browser")
         .with_variable(_datasource_variable()).with_variable(stream_var))
    d = d.with_panel(_stat("AQS", [(f"vqa_aqs{{{s}}}", "AQS")], unit="percentunit", w=6, h=5,
                           thresholds=AQS_THRESHOLDS))
    d = d.with_panel(_stat("Quality state", [(f"vqa_quality_state{{{s}}}", "state")], QUALITY_STATES, w=6, h=5))
    d = d.with_panel(_stat("Up", [(f"vqa_stream_up{{{s}}}", "up")], UP_STATES, w=6, h=5))
    d = d.with_panel(_stat("Dominant artifact now", [(f"topk(1, vqa_artifact_probability{{{s}}})", "{{artifact}}")],
                           unit="percentunit", w=6, h=5))
    d = d.with_panel(_ts("AQS", [(f"vqa_aqs{{{s}}}", "AQS")], unit="percentunit", w=24, min=0, max=1))
    d = d.with_panel(_ts("Artifact probabilities", [(f"vqa_artifact_probability{{{s}}}", "{{artifact}}")],
                         unit="percentunit", w=24, min=0, max=1))
    d = d.with_panel(_ts("Window latency (last frame decoded -> score published)", [
        (f"histogram_quantile({q}, sum by (le) (rate(vqa_window_latency_seconds_bucket{{{s}}}[$__rate_interval])))",
         f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], unit="s"))
    d = d.with_panel(_ts("Inference time per batch (all streams)", [
        ("histogram_quantile(0.95, sum by (le, engine) (rate(vqa_inference_seconds_bucket[$__rate_interval])))",
         "p95 {{engine}}"),
        ("sum by (engine) (rate(vqa_inference_seconds_sum[$__rate_interval])) / "
         "sum by (engine) (rate(vqa_inference_seconds_count[$__rate_interval]))", "mean {{engine}}")], unit="s"))
    d = d.with_panel(_ts("Frame rate", [
        (f"vqa_frame_rate{{{s}}}", "measured"),
        (f"vqa_expected_frame_rate{{{s}}}", "expected"),
        (f"rate(vqa_frames_decoded_total{{{s}}}[$__rate_interval])", "decoded")], unit="fps"))
    d = d.with_panel(_ts("Bitrate", [(f"vqa_bitrate_bits_per_second{{{s}}}", "bitrate")], unit="bps"))
    d = d.with_panel(_ts("Windows scored and dropped", [
        (f"rate(vqa_windows_scored_total{{{s}}}[$__rate_interval])", "scored/s"),
        (f"rate(vqa_windows_dropped_total{{{s}}}[$__rate_interval])", "dropped/s")], unit="none"))
    d = d.with_panel(_ts("Reconnects and decode errors", [
        (f"increase(vqa_stream_reconnects_total{{{s}}}[$__rate_interval])", "reconnects"),
        (f"increase(vqa_decode_errors_total{{{s}}}[$__rate_interval])", "decode errors")], unit="none"))
    d = d.with_panel(_timeline("Picture signals", [
        (f"vqa_stream_up{{{s}}} == bool 0", "down"),
        (f"vqa_no_video{{{s}}}", "no video"),
        (f"vqa_black{{{s}}}", "black"),
        (f"vqa_frozen{{{s}}}", "frozen"),
        (f"vqa_frame_rate_deviation{{{s}}}", "fps deviation"),
        # only HLS streams have the series; "no" for the others rather than an empty row
        (f"max(vqa_hls_playlist_stale{{{s}}}) or vector(0)", "HLS playlist stale")], FLAG_STATES, h=8))
    d = _audio_panels(d, s)
    return d


def _audio_panels(d: gdash.Dashboard, s: str) -> gdash.Dashboard:
    """The stream's audio (docs/audio.md): no data for a stream without an audio track (none expected)."""
    d = d.with_row(gdash.Row("Audio"))
    d = d.with_panel(_ts("Loudness (EBU R128)", [
        (f"vqa_audio_loudness_momentary_lufs{{{s}}}", "momentary"),
        (f"vqa_audio_loudness_short_term_lufs{{{s}}}", "short-term"),
        (f"vqa_audio_loudness_integrated_lufs{{{s}}}", "integrated")], unit="suffix: LUFS"))
    d = d.with_panel(_ts("Loudness range and true peak", [
        (f"vqa_audio_loudness_range_lu{{{s}}}", "loudness range (LU)"),
        (f"vqa_audio_true_peak_dbtp{{{s}}}", "true peak (dBTP)")], w=8))
    d = d.with_panel(_ts("Audio decode errors", [
        (f"increase(vqa_audio_decode_errors_total{{{s}}}[$__rate_interval])", "decode errors")], w=4))
    d = d.with_panel(_timeline("Audio signals", [
        (f"vqa_audio_missing{{{s}}}", "missing"),
        (f"vqa_audio_silence{{{s}}}", "silence"),
        (f"vqa_audio_loudness_out_of_range{{{s}}}", "loudness off target"),
        (f"vqa_audio_clipping{{{s}}}", "clipping")], FLAG_STATES))
    return d


DASHBOARDS = {"vqa-overview.json": overview, "vqa-stream.json": per_stream}


def render(builder: gdash.Dashboard) -> str:
    return json.dumps(builder.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def _walk_targets(model: dict) -> Iterable[tuple[str, str, str]]:
    for panel in model.get("panels", []):
        yield from _walk_targets(panel)  # rows may nest panels
        for target in panel.get("targets", []) or []:
            if target.get("expr"):
                yield panel.get("title", ""), target.get("refId", ""), target["expr"]


def panel_queries(stream: str, rate_interval: str = "1m") -> list[dict[str, str]]:
    """Every panel's PromQL in both dashboards, with ``$stream`` and ``$__rate_interval`` expanded:
    ``[{"dashboard", "panel", "ref_id", "expr"}]``."""
    out = []
    for name, text in rendered().items():
        model = json.loads(text)
        for title, ref, expr in _walk_targets(model):
            expr = expr.replace("$__rate_interval", rate_interval).replace("$stream", stream)
            out.append({"dashboard": model["uid"], "panel": title, "ref_id": ref, "expr": expr})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = OUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run grafana/build_dashboards.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
