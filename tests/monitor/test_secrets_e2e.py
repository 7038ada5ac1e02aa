"""Secrets in every position of a stream URL never reach the real daemon's log lines (text and JSON),
its metrics, or ``--check`` errors; a newline cannot forge a log line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servers import daemon_config, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def secret_urls(port: int) -> dict[str, tuple[str, list[str]]]:
    """name -> (URL of a closed loopback port, the secrets in it)."""
    host = f"127.0.0.1:{port}"
    return {
        "slash-password": (f"rtsp://admin:SEKRIT1/PW61@{host}/live", ["SEKRIT1", "PW61"]),
        "auth-key-sign": (f"http://{host}/x.m3u8?auth_key=1-0-0-SEKRIT2&sign=SEKRIT3", ["SEKRIT2", "SEKRIT3"]),
        "ws-tx-secret": (f"http://{host}/x.flv?wsSecret=SEKRIT4&txSecret=SEKRIT5&wsTime=1", ["SEKRIT4", "SEKRIT5"]),
        "wms-secret-key": (f"http://{host}/x?wmsAuthSign=SEKRIT6&secret_key=SEKRIT7", ["SEKRIT6", "SEKRIT7"]),
        "rtmp-key": (f"rtmp://{host}/app/live_1234_SEKRIT8", ["SEKRIT8"]),
        "fragment": (f"http://{host}/x.m3u8#token=SEKRIT9", ["SEKRIT9"]),
        "bare-token": (f"https://SEKRITA@{host}/x.m3u8", ["SEKRITA"]),
    }


def all_secrets(urls: dict[str, tuple[str, list[str]]]) -> list[str]:
    return [secret for _, secrets in urls.values() for secret in secrets]


@pytest.mark.slow
def test_daemon_logs_and_metrics_carry_no_secret(daemon) -> None:
    urls = secret_urls(free_port())
    d = daemon([{"name": name, "url": url} for name, (url, _) in urls.items()])
    wait_until(lambda: {e.get("stream") for e in d.events() if e.get("event") == "stream_down"} >= set(urls), 30,
               what="every stream reported down")
    text = d.logs() + d.get("/metrics")[1] + d.get("/readyz")[1]
    for secret in all_secrets(urls):
        assert secret not in text, secret
    starts = [e for e in d.events() if e.get("event") == "stream_start"]
    assert {e["stream"] for e in starts} == set(urls) and all("***" in e["url"] for e in starts)


@pytest.mark.slow
def test_text_format_log_lines_carry_no_secret(tmp_path: Path) -> None:
    urls = secret_urls(free_port())
    config = daemon_config([{"name": name, "url": url} for name, (url, _) in urls.items()], free_port())
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(path), "--log-format", "text"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: log_path.read_text().count("event=stream_down") >= len(urls), 60,
                       what="every stream reported down")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    text = log_path.read_text()
    for secret in all_secrets(urls):
        assert secret not in text, secret
    assert proc.returncode == 0 and "Traceback" not in text


def test_check_errors_carry_no_secret_and_a_newline_forges_no_line(tmp_path: Path) -> None:
    urls = secret_urls(9)
    # every URL made invalid (an unknown scheme), so that --check prints it in its error
    streams = [{"name": name, "url": "x" + url} for name, (url, _) in urls.items()]
    streams.append({"name": "forged", "url": "rtsp://u:SEKRITB@h/x\n2026-01-01T00:00:00.000Z ERROR forged line"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"streams": streams}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "monitor", "--check", "--config", str(path)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 2
    for secret in all_secrets(urls) + ["SEKRITB"]:
        assert secret not in result.stderr, secret
    lines = result.stderr.splitlines()
    assert len(lines) == len(streams) + 1 and not any(line.startswith("2026-01-01") for line in lines), lines
