"""Config validation and `vqa-monitor --check`: every problem listed with its key path, exit 2, no traceback."""
from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from monitor.config import Config, ConfigError, load_config, parse_config, parse_listen, parse_source
from monitor.quality_state import QualityConfig
from monitor.signals import ChecksConfig

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3tPW"


def check(tmp_path: Path, text: str | None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    import os

    return subprocess.run([sys.executable, "-m", "monitor", "--check", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config.yaml")
    assert [s.name for s in config.streams] == ["demo"]
    assert config.metrics.address == ("127.0.0.1", 9108)
    assert config.streams[0].source.kind == "file"
    assert config.streams[0].stride == 7 and config.streams[0].loop
    # the shipped file documents every checks:/quality: key with the code's defaults
    assert config.checks == ChecksConfig() and config.quality == QualityConfig()
    assert config.streams[0].checks == ChecksConfig() and config.streams[0].quality == QualityConfig()


def test_checks_and_quality_apply_to_all_streams_and_streams_override_key_by_key() -> None:
    config = parse_config(
        "checks: {stride: 2, black: {min_duration: 1, clear_duration: 3}}\n"
        "quality: {warn: 0.7, enter_windows: 2}\n"
        "streams:\n"
        "  - {name: a, url: 'lavfi:testsrc2'}\n"
        "  - {name: b, url: 'lavfi:testsrc2', checks: {black: {min_duration: 4}, freeze: {enabled: false}},\n"
        "     quality: {crit: 0.2}}\n")
    a, b = config.streams
    assert (a.checks.stride, a.checks.black.min_duration, a.checks.black.clear_duration) == (2, 1, 3)
    assert (a.quality.warn, a.quality.crit, a.quality.enter_windows) == (0.7, 0.4, 2)
    assert (b.checks.stride, b.checks.black.min_duration, b.checks.black.clear_duration) == (2, 4, 3)
    assert not b.checks.freeze.enabled and a.checks.freeze.enabled
    assert (b.quality.warn, b.quality.crit, b.quality.enter_windows) == (0.7, 0.2, 2)


def test_defaults_apply_and_streams_override(tmp_path: Path) -> None:
    config = parse_config(
        "defaults: {stride: 3, read_timeout_s: 2}\n"
        "streams:\n"
        "  - {name: a, url: 'lavfi:testsrc2'}\n"
        "  - {name: b, url: 'lavfi:testsrc2', stride: 7}\n")
    a, b = config.streams
    assert (a.stride, b.stride) == (3, 7) and a.read_timeout_s == b.read_timeout_s == 2


def test_env_expansion() -> None:
    config = parse_config("streams:\n  - {name: cam, url: 'rtsp://u:${PW}@h/live'}\n  - {name: d, url: '${U:-lavfi:testsrc}'}\n",
                          environ={"PW": "x$y"})
    assert config.streams[0].url == "rtsp://u:x$y@h/live"
    assert config.streams[1].url == "lavfi:testsrc"
    assert "x$y" not in config.streams[0].display_url


def test_relative_file_paths_resolve_against_the_config(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "c.yaml").write_text("streams: [{name: f, url: clip.mp4}]\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.streams[0].url == str((tmp_path / "clip.mp4").resolve())


@pytest.mark.parametrize(
    ("url", "kind"),
    [("rtsp://h/x", "rtsp"), ("rtsps://h:322/x", "rtsp"), ("https://h/a.m3u8", "network"), ("rtmp://h/app", "network"),
     ("udp://127.0.0.1:5000", "network"), ("lavfi:testsrc2", "lavfi"), ("demo:", "file")],
)
def test_source_kinds(url: str, kind: str) -> None:
    assert parse_source(url).kind == kind


@pytest.mark.parametrize("value", ["127.0.0.1:0", "127.0.0.1:65536", "localhost", "h:x", ":9108", "[zz]:9108"])
def test_bad_listen(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


def test_ipv6_listen() -> None:
    assert parse_listen("[::1]:9108") == ("::1", 9108)


BAD_CONFIGS = {
    "unknown key": ("streams: [{name: a, url: 'lavfi:testsrc', strid: 3}]\n", "streams[0].strid: unknown key (did you mean 'stride'?)"),
    "unknown section": ("streamz: []\n", "streamz: unknown key"),
    "duplicate names": ("streams: [{name: a, url: 'lavfi:testsrc'}, {name: a, url: 'lavfi:testsrc'}]\n",
                        "streams[1].name: 'a': duplicate stream name (also streams[0])"),
    "bad name": ("streams: [{name: 'Cam 1', url: 'lavfi:testsrc'}]\n", "streams[0].name: 'Cam 1': must match"),
    "bad URL scheme": (f"streams: [{{name: a, url: 'ftp://u:{SECRET}@h/x'}}]\n", "streams[0].url: 'ftp://u:***@h/x': bad URL scheme 'ftp'"),
    "bad port": ("metrics: {listen: '127.0.0.1:70000'}\nstreams: []\n", "metrics.listen: '127.0.0.1:70000': port must be a number from 1 to 65535"),
    "missing file": ("streams: [{name: a, url: /nonexistent/clip.mp4}]\n", "streams[0].url: '/nonexistent/clip.mp4': file not found"),
    "YAML syntax": ("streams:\n  - {name: a, url: x\n  bad: [\n", "YAML syntax error at line 3, column"),
    "missing env var": ("streams: [{name: a, url: 'rtsp://u:${VQA_TEST_UNSET_VAR}@h/x'}]\n",
                        "streams[0].url: ${VQA_TEST_UNSET_VAR}: environment variable VQA_TEST_UNSET_VAR is not set"),
    "bad engine": ("engine: {prefer: [warp-drive]}\nstreams: []\n", "engine.prefer: ['warp-drive']: unknown engine backend"),
    "threads for an engine that takes none": ("engine: {prefer: [tensorrt, classical], threads: 2}\nstreams: []\n",
                                              "engine.threads: 2: tensorrt takes no thread count"),
    "bad backoff": ("defaults: {reconnect_min_s: 5, reconnect_max_s: 1}\nstreams: []\n", "defaults: {...}: reconnect_min_s (5.0) must not exceed"),
    "not a mapping": ("- a\n- b\n", "<top>: list: expected a mapping"),
    "bad check value": ("checks: {black: {min_duration: -1}}\nstreams: []\n",
                        "checks.black.min_duration: -1: Input should be greater than or equal to 0"),
    "unknown check key": ("checks: {freeze: {min_duraton: 3}}\nstreams: []\n",
                          "checks.freeze.min_duraton: unknown key (did you mean 'min_duration'?)"),
    "bad frame-rate window": ("checks: {frame_rate: {window: 0.5}}\nstreams: []\n",
                              "checks: {...}: frame_rate.window must be at least 1 second"),
    "quality thresholds out of order": ("quality: {warn: 0.3, crit: 0.5}\nstreams: []\n",
                                        "quality: {...}: crit (0.5) must be below warn (0.3)"),
    "unknown quality key": ("quality: {enter_window: 3}\nstreams: []\n",
                            "quality.enter_window: unknown key (did you mean 'enter_windows'?)"),
    "bad per-stream check": ("streams: [{name: a, url: 'lavfi:testsrc', checks: {no_video: {timeout: 0}}}]\n",
                             "streams[0].checks.no_video.timeout: 0: Input should be greater than 0"),
    "bad per-stream quality": ("streams: [{name: a, url: 'lavfi:testsrc', quality: {warn: 2}}]\n",
                               "streams[0].quality.warn: 2: Input should be less than or equal to 1"),
    "stream override conflicts with top level": (
        "quality: {crit: 0.4}\nstreams: [{name: a, url: 'lavfi:testsrc', quality: {warn: 0.3}}]\n",
        "streams[0].quality: {...}: crit (0.4) must be below warn (0.3)"),
    "per-stream checks not a mapping": ("streams: [{name: a, url: 'lavfi:testsrc', checks: 5}]\n",
                                        "streams[0].checks: 5: Input should be a valid dictionary"),
    "checks under defaults": ("defaults: {checks: {stride: 2}}\nstreams: []\n",
                              "defaults.checks: unknown key (checks: is a top-level section"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_check_rejects_bad_configs(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CONFIGS[case]
    result = check(tmp_path, text)
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert SECRET not in result.stderr + result.stdout


def test_check_lists_every_problem_at_once(tmp_path: Path) -> None:
    text = (f"metrics: {{listen: 'nope'}}\nengine: {{max_batch: 0}}\n"
            f"streams:\n  - {{name: Bad, url: 'rtsp://admin:{SECRET}@h/x'}}\n  - {{name: b, url: 'gopher://h'}}\n")
    result = check(tmp_path, text)
    assert result.returncode == 2
    for path in ("metrics.listen", "engine.max_batch", "streams[0].name", "streams[1].url"):
        assert f": {path}: " in result.stderr, result.stderr
    assert SECRET not in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    result = check(tmp_path, None)
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_check_ok(tmp_path: Path) -> None:
    result = check(tmp_path, "streams: [{name: a, url: 'rtsp://u:${PW}@h/x'}]\n", env={"PW": SECRET})
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and SECRET not in result.stdout


def test_daemon_refuses_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("streams: [{name: a, url: 'ftp://h/x'}]\n")
    result = subprocess.run([sys.executable, "-m", "monitor", "--config", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "bad URL scheme" in result.stderr and "Traceback" not in result.stderr


def test_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "monitor", "--version"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("vqa-monitor ")
    out = subprocess.run([sys.executable, "-m", "monitor", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--check" in out.stdout and "--log-format" in out.stdout


def test_config_error_object() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("streams: [{name: a}]\n", source="x.yaml")
    assert info.value.problems == ["streams[0].url: missing: required key"]


def _sections(model: type[BaseModel]) -> set[type[BaseModel]]:
    """``model`` and every model nested in it (``Model`` or ``list[Model]`` fields)."""
    found = {model}
    for field in model.model_fields.values():
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate not in found:
                found |= _sections(candidate)
    return found


def test_every_section_refuses_unknown_keys_and_is_immutable() -> None:
    sections = _sections(Config)
    assert {ChecksConfig, QualityConfig, type(ChecksConfig().freeze)} <= sections  # nested ones are reached
    for model in sections:
        assert (model.model_config.get("extra"), model.model_config.get("frozen")) == ("forbid", True), model
    stream = parse_config("streams: [{name: a, url: 'lavfi:testsrc'}]\n").streams[0]
    with pytest.raises(ValidationError):
        stream.stride = 3  # a reload compares configs: nobody may change one in place
