"""``vqa-monitor score`` and ``--check`` on hostile input: damage is skipped and counted, URLs are masked and
time out, a full stdout is a clear error (the real CLI in a subprocess each time)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from badmedia import build_corpus

REPO = Path(__file__).resolve().parents[2]
SECRET = "SEKRIT42"


def cli(*args: str, timeout: float = 120, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "monitor", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("badmedia"))


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers (a hung stream server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_score_skips_damaged_packets_counts_them_and_goes_on(corpus: dict[str, Path]) -> None:
    """A TS with 1 % of its bytes flipped: once abandoned at the first decode error (after 5 frames)."""
    result = cli("score", "--engine", "classical", "--json", str(corpus["bitflip_1pct.ts"]))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    scored = json.loads(line)
    assert scored["decode_errors"] > 0 and scored["frames"] >= 60 and len(scored["windows"]) >= 8  # of 100 frames
    assert f"{scored['decode_errors']} damaged packet(s) skipped" in result.stderr
    assert "Traceback" not in result.stderr


def test_score_on_the_whole_corpus_gives_a_line_per_file_and_no_traceback(corpus: dict[str, Path]) -> None:
    result = cli("score", "--engine", "classical", "--json", *map(str, corpus.values()))
    assert result.returncode == 1  # some files cannot be scored at all (empty, audio only, garbage)
    scored = {Path(json.loads(line)["path"]).name for line in result.stdout.splitlines()}
    errors = [line for line in result.stderr.splitlines() if "damaged packet(s) skipped" not in line]
    refused = {name for name in corpus if any(f"{corpus[name]}: " in line for line in errors)}
    assert scored | refused == set(corpus) and not scored & refused, (scored, refused, result.stderr)
    assert {"ten_bit.mkv", "odd_size_17x11.mkv", "resolution_change.ts", "pixel_format_change.ts",
            "truncated.ts", "bitflip_1pct.ts"} <= scored
    assert "Traceback" not in result.stderr


def test_score_masks_urls_and_times_out_on_a_silent_server(silent_server: int) -> None:
    port = silent_server
    urls = [f"rtsp://admin:{SECRET}/x@127.0.0.1:{port}/live",
            f"http://127.0.0.1:{port}/live.m3u8?token={SECRET}",
            f"rtmp://127.0.0.1:{port}/app/{SECRET}",
            f"tcp://127.0.0.1:{port}?auth_key={SECRET}",
            f"https://viewer:{SECRET}@127.0.0.1:{port}/x.ts#sign={SECRET}"]
    started = time.monotonic()
    result = cli("score", "--engine", "classical", "--timeout", "1", *urls, timeout=90)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1 and SECRET not in output, output
    assert output.count("vqa-monitor score: ") >= len(urls)
    assert elapsed < 60, f"{len(urls)} silent URLs with --timeout 1 took {elapsed:.0f} s"


@pytest.mark.parametrize("command", [("--check", "--config", str(REPO / "config.yaml")),
                                     ("score", "--engine", "classical", "--json", "{clip}")])
def test_a_full_stdout_is_a_clear_error(command: tuple[str, ...], corpus: dict[str, Path]) -> None:
    args = [part.replace("{clip}", str(corpus["ten_bit.mkv"])) for part in command]
    with open("/dev/full", "w") as full:
        result = cli(*args, stdout=full.fileno())
    assert result.returncode == 1, result.stderr
    assert "cannot write to standard output: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
