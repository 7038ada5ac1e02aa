"""Routes of the status page on the metrics port (read-only; docs/web.md).

``/`` overview, ``/streams/NAME`` one stream, ``/api/streams`` and ``/api/streams/NAME`` the same as
JSON, ``/snapshots/NAME/{live,ID,ID.heat}.jpg`` pictures, ``/static/FILE`` the page's script and style.
A name in a path is percent-encoded (ladder variants contain a slash).

Access: with credentials configured (``web.username``/``password`` and/or ``web.token``) every route
here needs them (basic or bearer, compared in constant time); without any, the routes answer only on a
loopback listen address and 403 elsewhere. The page's HTML holds no data: scripts fetch the JSON and
write it with ``textContent``, and the Content-Security-Policy allows no inline script, so a stream name
cannot inject markup.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import html
import ipaddress
import json
import logging
import math
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from engines.aqs import QUALITY_BANDS
from monitor.snapshots import ARTIFACT_COLOURS, SnapshotWriter, snapshot_root
from monitor.web.board import StreamBoard
from monitor.web.settings import WebConfig

if TYPE_CHECKING:
    from monitor.config import Config

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebApp:
    def __init__(self, config: WebConfig, listen_host: str, board: StreamBoard, writer: SnapshotWriter | None) -> None:
        self.config = config
        self.board = board
        self.writer = writer if config.pictures else None
        self.open_without_credentials = is_loopback(listen_host)

    # access ------------------------------------------------------------------------------------------
    def access_problem(self, authorization: str | None) -> Response | None:
        """None when the request may see the page; else the 401/403 answer."""
        if not self.config.has_credentials:
            if self.open_without_credentials:
                return None
            return Response(403, b"the status page needs web.username/password or web.token on a non-loopback "
                                 b"listen address\n")
        if authorization and self._credentials_match(authorization):
            return None
        challenge = 'Basic realm="vqa-monitor", charset="UTF-8"' if self.config.username else 'Bearer realm="vqa-monitor"'
        return Response(401, b"credentials required\n", headers={"WWW-Authenticate": challenge})

    def _credentials_match(self, authorization: str) -> bool:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.config.token is not None:
            return hmac.compare_digest(value.encode(), self.config.token.encode())
        if scheme.lower() == "basic" and self.config.username is not None and self.config.password is not None:
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return False
            user_ok = hmac.compare_digest(user.encode(), self.config.username.encode())
            password_ok = hmac.compare_digest(password.encode(), self.config.password.encode())
            return bool(sep) and user_ok and password_ok
        return False

    # routes ------------------------------------------------------------------------------------------
    def handle(self, raw_path: str, authorization: str | None) -> Response | None:
        """The answer for a path of this app, or None when the path is not one of its routes."""
        parts = raw_path.split("?", 1)[0].split("/")[1:]
        if not parts or parts[0] not in ("", "streams", "api", "snapshots", "static"):
            return None
        denied = self.access_problem(authorization)
        if denied is not None:
            return denied
        try:
            parts = [urllib.parse.unquote(p, errors="strict") for p in parts]
        except UnicodeDecodeError:
            return Response(400, b"bad path\n")
        response = self._route(parts)
        if response is None:
            response = Response(404, b"not found\n")
        response.headers = {**_SECURITY_HEADERS, **response.headers}
        return response

    def _route(self, parts: list[str]) -> Response | None:
        match parts:
            case [""]:
                return self._page("overview", "vqa-monitor", "")
            case ["streams", name] if name:
                return self._page("stream", f"vqa-monitor: {name}", name) if name in self.board.names() else None
            case ["api", "streams"]:
                return _json({"streams": self.board.summaries(), **self._page_facts(), "snapshots": self._writer_counts()})
            case ["api", "streams", name]:
                detail = self.board.detail(name)
                return None if detail is None else _json({**detail, **self._page_facts()})
            case ["snapshots", name, picture] if picture.endswith(".jpg") and self.writer is not None:
                if name not in self.board.names():
                    return None
                data = self.writer.picture(name, picture[: -len(".jpg")])
                return None if data is None else Response(200, data, "image/jpeg")
            case ["static", asset] if (STATIC / asset).suffix in _STATIC_TYPES and asset in _assets():
                return Response(200, (STATIC / asset).read_bytes(), _STATIC_TYPES[(STATIC / asset).suffix])
        return None

    def _writer_counts(self) -> dict[str, int] | None:
        writer = self.board.writer
        return None if writer is None else {"written": writer.written, "dropped": writer.dropped, "failed": writer.failed}

    def _page_facts(self) -> dict[str, object]:
        return {"pictures": self.writer is not None, "artifact_colours": ARTIFACT_COLOURS,
                "bands": [[bound, name] for bound, name in QUALITY_BANDS]}

    def _page(self, kind: str, title: str, stream: str) -> Response:
        body = PAGE.format(title=html.escape(title), kind=kind, stream=html.escape(stream, quote=True),
                           back="" if kind == "overview" else '<a href="/">&larr; all streams</a>')
        return Response(200, body.encode(), "text/html; charset=utf-8")


def _assets() -> set[str]:
    return {p.name for p in STATIC.iterdir() if p.is_file()}


def _json(data: object) -> Response:
    return Response(200, json.dumps(_finite(data), allow_nan=False, default=str).encode(), "application/json")


def _finite(data: object) -> object:
    """NaN and infinities as null: JSON has neither."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/web.css"></head>
<body data-page="{kind}" data-stream="{stream}">
<header><h1>{title}</h1>{back}<span id="updated"></span></header>
<main id="main"><p class="empty">loading&hellip;</p></main>
<script src="/static/web.js"></script>
</body></html>
"""


def build_web(config: Config, base_dir: Path | None, names: Callable[[], list[str]], listen_host: str,
              on_snapshot: Callable[[str], None] | None = None,
              ) -> tuple[StreamBoard | None, SnapshotWriter | None, WebApp | None]:
    """The board, the snapshot writer (started; ``on_snapshot`` is told each picture's result) and the page
    for ``config``; each None when turned off."""
    writer = None
    if config.snapshots.enabled:
        root = snapshot_root(config.snapshots, base_dir)
        try:
            writer = SnapshotWriter(config.snapshots, root, on_snapshot)
            writer.start()
        except OSError as exc:
            log.error("snapshot folder unusable; no snapshots", extra={
                "event": "snapshots_off", "dir": str(root), "reason": exc.strerror or str(exc)})
            writer = None
    if writer is None and not config.web.enabled:
        return None, None, None
    board = StreamBoard(names, writer, config.snapshots.live_interval_s)
    app = None
    if config.web.enabled:
        app = WebApp(config.web, listen_host, board, writer)
        if not app.open_without_credentials and not config.web.has_credentials:
            log.warning("status page off: a non-loopback listen address needs web.username/password or web.token",
                        extra={"event": "web_needs_credentials", "listen": listen_host})
    return board, writer, app
