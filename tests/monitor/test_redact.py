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
