"""The real daemon's status page behind credentials from the environment: no credentials -> 401,
wrong ones -> 401, right ones -> 200; /metrics, /healthz, /readyz stay open; the secrets appear in
no log line and no answer."""
from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

from servers import DaemonProcess, daemon_config, free_port

TOKEN = "web-token-5e1f0c9a"
PASSWORD = "web-password-77d2b4"
GUARDED = ["/", "/streams/cam", "/api/streams", "/api/streams/cam", "/static/web.js"]


def status(url: str, authorization: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_page_needs_the_credentials_from_the_environment(tmp_path: Path) -> None:
    config = daemon_config([{"name": "cam", "url": "demo:"}], free_port(), prefer=["classical"],
                           web={"username": "ops", "password": "${VQA_WEB_PASSWORD}", "token": "${VQA_WEB_TOKEN}"},
                           snapshots={"dir": str(tmp_path / "snapshots")})
    daemon = DaemonProcess(tmp_path / "daemon", config, env={"VQA_WEB_PASSWORD": PASSWORD, "VQA_WEB_TOKEN": TOKEN})
    right_basic = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    wrong_basic = "Basic " + base64.b64encode(b"ops:not-it").decode()
    answers = []
    try:
        daemon.start("readyz")
        for path in GUARDED:
            url = daemon.base_url + path
            assert status(url)[0] == 401, path
            assert status(url, wrong_basic)[0] == 401, path
            assert status(url, "Bearer not-it")[0] == 401, path
            for good in (right_basic, f"Bearer {TOKEN}"):
                code, body = status(url, good)
                assert code == 200, path
                answers.append(body)
        for path in ("/metrics", "/healthz", "/readyz"):
            code, body = status(daemon.base_url + path)
            assert code == 200, path
            answers.append(body)
    finally:
        daemon.close()
    for secret in (TOKEN, PASSWORD):
        assert secret not in daemon.logs()
        assert not any(secret.encode() in body for body in answers)
