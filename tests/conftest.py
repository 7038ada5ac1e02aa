"""Shared fixtures: real servers and the real daemon (see tests/servers.py for the classes).

    def test_something(rtsp_server, daemon):
        cam = rtsp_server(pattern="ball")                     # started, closed after the test
        d = daemon([{"name": "cam", "url": cam.url}])        # config from daemon_config(...), started
        d.wait_value("vqa_windows_scored_total", lambda v: v > 0, stream="cam")

Factories take the same arguments as :class:`RtspServer`, :class:`HlsServer` and
:func:`daemon_config`; everything they start is stopped at teardown, and a daemon's log is printed
(shown by pytest when the test fails).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from servers import ...` in every test package

from servers import (  # noqa: E402
    DaemonProcess,
    HlsServer,
    RtspServer,
    daemon_config,
    free_port,
    make_clip,
    rtsp_server_available,
)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def test_clip(clip_dir: Path) -> Path:
    """A 4 s 640x360@25 H.264 clip (testsrc2) with a keyframe every second, as MPEG-TS."""
    return make_clip(clip_dir / "testsrc2_360p.ts", seconds=4, size="640x360", fps=25)


@pytest.fixture(scope="session")
def _rtsp_available() -> None:
    reason = rtsp_server_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def rtsp_server(_rtsp_available: None, tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    started: list[RtspServer] = []

    def factory(**kwargs: Any) -> RtspServer:
        kwargs.setdefault("log_dir", tmp_path)
        server = RtspServer(**kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.close()


@pytest.fixture
def hls_server(tmp_path: Path, test_clip: Path) -> Iterator[Callable[..., HlsServer]]:
    started: list[HlsServer] = []

    def factory(clip: Path | None = None, **kwargs: Any) -> HlsServer:
        server = HlsServer(clip or test_clip, tmp_path / f"hls{len(started)}", **kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``daemon(streams, wait="healthz", env=None, **daemon_config_kwargs)`` -> a started DaemonProcess.

    ``streams`` may also be a whole config dict or YAML text (then used as is).
    """
    started: list[DaemonProcess] = []

    def factory(streams: Any, *, wait: str | None = "healthz", env: dict[str, str] | None = None,
                **kwargs: Any) -> DaemonProcess:
        if isinstance(streams, (dict, str)):
            config = streams
        else:
            config = daemon_config(streams, kwargs.pop("port", None) or free_port(), **kwargs)
        process = DaemonProcess(tmp_path / f"daemon{len(started)}", config, env=env)
        started.append(process)
        return process.start(wait=wait)

    yield factory
    for process in started:
        process.close()
        tail = process.logs()[-6000:]
        if tail:
            print(f"--- daemon log {process.log_path} (tail) ---\n{tail}")
