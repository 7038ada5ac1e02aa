"""Credentials never survive redaction."""
from __future__ import annotations

import logging
import io
import json

import pytest

from monitor.logs import setup_logging
from monitor.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
        ("rtsp://TOKEN123@cam/live", "rtsp://***@cam/live"),
        ("https://cdn.example/live.m3u8?token=abc&x=1", "https://cdn.example/live.m3u8?token=***&x=1"),
        ("https://h/p?X-Amz-Signature=zz&X-Amz-Credential=cc&a=b", "https://h/p?X-Amz-Signature=***&X-Amz-Credential=***&a=b"),
        ("srt://h:9000?mode=caller&passphrase=s3cret", "srt://h:9000?mode=caller&passphrase=***"),
        ("rtmp://u:p@h/app/key?api_key=k", "rtmp://u:***@h/app/***?api_key=***"),
        ("http://h/live.m3u8", "http://h/live.m3u8"),
        ("/data/clip.mp4", "/data/clip.mp4"),
        ("lavfi:testsrc2=size=1280x720:rate=25", "lavfi:testsrc2=size=1280x720:rate=25"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_masks_urls_inside_messages() -> None:
    msg = "av.error.HTTPForbiddenError: [Errno 1] 'https://bob:pw1@h/x.m3u8?auth=tok9' failed"
    out = redact_text(msg)
    assert "pw1" not in out and "tok9" not in out and "bob:***@h" in out


def test_redact_text_with_known_secret_urls() -> None:
    url = "rtsp://u:p4ss@h/live"
    assert "p4ss" not in redact_text(f"cannot open {url}", [url])


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_are_masked_one_line(fmt: str) -> None:
    buf = io.StringIO()
    setup_logging(fmt, "info", stream=buf)
    try:
        try:
            raise RuntimeError("open rtsp://admin:topsecret@cam/live\nsecond line")
        except RuntimeError:
            logging.getLogger("t").exception("failed", extra={"stream": "cam", "url": "rtsp://a:topsecret@h/x?token=zz"})
    finally:
        setup_logging("text", "info")
    out = buf.getvalue()
    assert "topsecret" not in out and "zz" not in out
    assert out.count("\n") == 1
    if fmt == "json":
        record = json.loads(out)
        assert record["stream"] == "cam" and record["level"] == "error"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("rtsp://admin:SEKRIT/PW61@cam.example/live", "SEKRIT"),
        ("rtsp://admin:SEKRIT/PW61@cam.example/live", "PW61"),
        ("https://cdn.example/live.m3u8?auth_key=1700000000-0-0-SEKRIT", "SEKRIT"),
        ("https://cdn.example/live.m3u8?sign=SEKRIT&t=1", "SEKRIT"),
        ("rtmp://cdn.example/live/stream?wsSecret=SEKRIT&wsTime=1", "SEKRIT"),
        ("https://cdn.example/live.flv?txSecret=SEKRIT&txTime=1", "SEKRIT"),
        ("https://cdn.example/live.m3u8?wmsAuthSign=SEKRIT", "SEKRIT"),
        ("https://cdn.example/live.m3u8?secret_key=SEKRIT", "SEKRIT"),
        ("https://cdn.example/live.m3u8?upstream_token=SEKRIT", "SEKRIT"),
        ("rtmp://live.example/app/live_123456_SEKRIT", "SEKRIT"),
        ("rtmps://live.example:443/app/SEKRIT?x=1", "SEKRIT"),
        ("https://cdn.example/live.m3u8#token=SEKRIT", "SEKRIT"),
        ("https://cdn.example/live.m3u8?a=1;token=SEKRIT", "SEKRIT"),
    ],
)
def test_secret_positions_are_masked(url: str, secret: str) -> None:
    assert secret not in redact_url(url)
    assert secret not in redact_text(f"open failed: '{url}': Connection refused")


def test_masking_keeps_what_is_not_secret() -> None:
    assert redact_url("https://cdn.example/live/user@example.com/x.m3u8") == "https://cdn.example/live/user@example.com/x.m3u8"
    assert redact_url("rtmp://h/app") == "rtmp://h/app"
    assert redact_url("https://h/p?keyframe_interval=2&token=x") == "https://h/p?keyframe_interval=2&token=***"
    assert redact_text("a rtsp://u:p1@h/x,http://t0k@h2/y b") == "a rtsp://u:***@h/x,http://***@h2/y b"


def test_masking_adversarial_text_of_200k_characters() -> None:
    """Runs of scheme characters without '://' once made the masking quadratic (4.4 s at 40k characters;
    benchmarks/masking.py measures it); these must still be masked correctly."""
    for text in ("a" * 200_000, "a://" * 50_000, "rtsp://" + "a:b" * 60_000, "?a=&" * 50_000, "http://t@" * 20_000):
        out = redact_text(text)
        assert len(out) <= len(text) + 4 * text.count("@")
    assert "p4ss" not in redact_text("x" * 100_000 + " rtsp://u:p4ss@h/x")


def test_text_log_values_cannot_forge_lines() -> None:
    buf = io.StringIO()
    setup_logging("text", "info", stream=buf)
    try:
        logging.getLogger("t").info("stream starting\nFAKE line", extra={
            "url": "rtsp://h/x\n2026-01-01T00:00:00.000Z ERROR  forged", "reason": "a\rb"})
    finally:
        setup_logging("text", "info")
    out = buf.getvalue()
    assert out.count("\n") == 1 and "\r" not in out
