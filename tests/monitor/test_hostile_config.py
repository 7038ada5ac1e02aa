"""Hostile and careless config files: a clear error naming the problem, exit 2, never a traceback or a hang.

Each file here once crashed or hung ``--check``, a start or a SIGHUP reload (deep nesting, huge
integers, over-long path components, ``/dev/zero``, a FIFO, alias bombs), or was accepted although
wrong (duplicate keys, loose types, a 0 us timeout, a URL without a host, a missing model folder,
unbounded check windows).
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from monitor.config import ConfigError, parse_config, parse_source
from servers import daemon_config, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
CHECK_TIMEOUT_S = 30
MEMORY_LIMIT = 2 << 30  # bytes of address space for a --check run (the alias bomb once grew past 700 MB)


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, levels + 1):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        text += f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    return text + "streams: []\n"


# name -> (file text, a phrase the error must contain)
HOSTILE_TEXTS: dict[str, tuple[str, str]] = {
    "nested 500 deep": ("streams: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than"),
    "integer of 5000 digits": ("defaults: {stride: " + "9" * 5000 + "}\nstreams: []\n", "5000 digits is too large"),
    "path component over 255 chars": ("streams: [{name: a, url: '/tmp/" + "x" * 300 + "/y.ts'}]\n",
                                      "File name too long"),
    "billion laughs": (billion_laughs(), "once aliases are expanded"),
    "alias to its own parent": ("streams: &s [*s]\n", "refers to its own parent"),
    "duplicate key": ("streams: []\nmetrics: {listen: '127.0.0.1:9108'}\nstreams: []\n", "duplicate key 'streams'"),
    "over 1 MiB": ("# " + "x" * (1 << 20) + "\nstreams: []\n", "larger than"),
    "not UTF-8": ("streams: []\n# \udcff\n", "not UTF-8"),
    "escape beyond Unicode": ('streams: []\nx: "\\U99999999"\n', "cannot be parsed: OverflowError"),  # atheris found it
}


def write_hostile(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


def run_cli(args: list[str], timeout: float = CHECK_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, preexec_fn=limit_memory, stdin=subprocess.DEVNULL)


def assert_refused(result: subprocess.CompletedProcess[str], phrase: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert phrase in output, output[-3000:]


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_check_refuses_hostile_file(name: str, tmp_path: Path) -> None:
    text, phrase = HOSTILE_TEXTS[name]
    path = tmp_path / "config.yaml"
    write_hostile(path, text)
    assert_refused(run_cli(["--check", "--config", str(path)]), phrase)


def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    return {"a FIFO without a writer": fifo, "/dev/zero": Path("/dev/zero"), "a directory": tmp_path}


@pytest.mark.parametrize("name", ["a FIFO without a writer", "/dev/zero", "a directory"])
@pytest.mark.parametrize("mode", ["check", "start"])
def test_non_regular_config_path_is_refused_at_once(name: str, mode: str, tmp_path: Path) -> None:
    path = special_files(tmp_path)[name]
    args = ["--check", "--config", str(path)] if mode == "check" else ["--config", str(path)]
    started = time.monotonic()
    result = run_cli(args)
    phrase = "is a directory" if name == "a directory" else "not a regular file"
    assert_refused(result, phrase)
    assert time.monotonic() - started < CHECK_TIMEOUT_S


@pytest.mark.parametrize("name", ["nested 500 deep", "billion laughs", "integer of 5000 digits"])
def test_start_with_hostile_file_exits_2_without_traceback(name: str, tmp_path: Path) -> None:
    text, phrase = HOSTILE_TEXTS[name]
    path = tmp_path / "config.yaml"
    write_hostile(path, text)
    assert_refused(run_cli(["--config", str(path), "--log-format", "text"]), phrase)


# -- accepted silently before: now each is an error at its key ------------------------------------------
WRONG_VALUES: dict[str, tuple[str, str]] = {
    "stride true": ("defaults: {stride: true}", "defaults.stride: True: Input should be a valid integer"),
    "stride as text": ("defaults: {stride: '7'}", "defaults.stride: '7': Input should be a valid integer"),
    "loop as text": ("defaults: {loop: 'yes'}", "defaults.loop: 'yes'"),
    "null ffmpeg option": ("defaults: {ffmpeg_options: {rtsp_transport: null}}", "rtsp_transport: NoneType value"),
    "mapping ffmpeg option": ("defaults: {ffmpeg_options: {a: {b: 1}}}", "a: dict value"),
    "list ffmpeg option": ("defaults: {ffmpeg_options: {a: [1]}}", "a: list value"),
    "0 us read timeout": ("defaults: {read_timeout_s: 1e-300}", "defaults.read_timeout_s: 1e-300: Input should be greater than or equal to 0.1"),
    "0 us open timeout": ("defaults: {open_timeout_s: 0.00001}", "defaults.open_timeout_s"),
    "tiny reconnect delay": ("defaults: {reconnect_min_s: 0.000001}", "defaults.reconnect_min_s"),
    "endless frame-rate window": ("checks: {frame_rate: {window: 1800}}", "checks.frame_rate.window: 1800: Input should be less than or equal to 300"),
    "endless bitrate window": ("checks: {bitrate: {window: 86400}}", "checks.bitrate.window"),
    "endless freeze duration": ("checks: {freeze: {min_duration: 86400}}", "checks.freeze.min_duration"),
    "missing model_dir": ("engine: {model_dir: no-such-models}", "engine.model_dir: 'no-such-models': folder not found"),
    "max_batch as text": ("engine: {max_batch: '8'}", "engine.max_batch"),
}


@pytest.mark.parametrize("name", sorted(WRONG_VALUES))
def test_wrong_value_is_an_error_at_its_key(name: str, tmp_path: Path) -> None:
    section, phrase = WRONG_VALUES[name]
    with pytest.raises(ConfigError) as caught:
        parse_config(f"{section}\nstreams: []\n", base_dir=tmp_path)
    assert any(phrase in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(("url", "phrase"), [
    ("http://?token=x", "URL has no host"),
    ("rtsp://user:pw@/live", "URL has no host"),
    ("https://#frag", "URL has no host"),
    ("rtmp://:1935/app", "URL has no host"),
    ("srt://h:9000?mode=caller", "the bundled FFmpeg has no SRT protocol"),
    ("rtsp://cam/live\nforged line", "control character"),
])
def test_unusable_url_is_refused(url: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        parse_source(url)


def test_the_srt_refusal_reason_is_true() -> None:
    """If a future PyAV bundles SRT, this fails: then support srt:// instead of refusing it."""
    import av

    with pytest.raises(av.error.ProtocolNotFoundError):
        av.open("srt://127.0.0.1:9/x", timeout=(2.0, 2.0))


def test_check_error_for_a_huge_stream_name_is_fast_and_short(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("streams: [{name: '" + "a" * 100_000 + "', url: 'lavfi:testsrc2'}]\n")
    started = time.monotonic()
    result = run_cli(["--check", "--config", str(path)])
    assert_refused(result, "must be at most 64 characters")
    assert time.monotonic() - started < CHECK_TIMEOUT_S


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    config = parse_config("defaults: &common {read_timeout_s: 3}\n"
                          "streams: [{name: a, url: 'lavfi:testsrc2', <<: *common, stride: 14}]\n", base_dir=tmp_path)
    assert config.streams[0].read_timeout_s == 3 and config.streams[0].stride == 14


# -- SIGHUP with each hostile file: the running configuration stays, the daemon keeps scoring --------------
def replace_config(path: Path, make: Callable[[Path], None]) -> None:
    tmp = path.with_name("config.new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    make(tmp)
    os.replace(tmp, path)


@pytest.mark.slow
def test_sighup_with_hostile_files_keeps_the_running_config(daemon, tmp_path: Path) -> None:
    port = free_port()
    good = daemon_config([{"name": "live", "url": "lavfi:testsrc2=size=320x240:rate=25"}], port)
    d = daemon(good)
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=60, stream="live")
    hostile: list[tuple[str, Callable[[Path], None]]] = [
        (name, lambda p, text=text: write_hostile(p, text)) for name, (text, _) in sorted(HOSTILE_TEXTS.items())]
    hostile += [("a FIFO without a writer", lambda p: os.mkfifo(p)),
                ("/dev/zero", lambda p: p.symlink_to("/dev/zero"))]
    assert d.proc is not None
    for count, (name, make) in enumerate(hostile, start=1):
        replace_config(d.config_path, make)
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sum(1 for e in d.events() if e.get("event") == "reload_rejected"
                               and "problems" in e) >= count, 20, what=f"reload of {name!r} rejected")
        d.assert_running()
    scored = d.value("vqa_windows_scored_total", stream="live")
    d.wait_value("vqa_windows_scored_total", lambda v: v > scored, timeout=30, stream="live")
    assert d.value("vqa_config_last_reload_successful") == 0
    assert d.terminate(timeout=10) < 5.0 and d.proc.returncode == 0
    assert "Traceback" not in d.logs()
