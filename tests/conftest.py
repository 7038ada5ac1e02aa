"""Shared fixtures: real servers and the real daemon (see tests/servers.py for the classes).

    def test_something(rtsp_server, daemon):
        cam = rtsp_server(pattern="ball")                     # started, closed after the test
        d = daemon([{"name": "cam", "url": cam.url}])        # config from daemon_config(...), started
        d.wait_value("vqa_windows_scored_total", lambda v: v > 0, stream="cam")

Factories take the same arguments as :class:`RtspServer`, :class:`HlsServer` and
:func:`daemon_config`; each is a :class:`Factory`: everything it starts is stopped at teardown, and a
failed test's report gets the log tails of everything it started.
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

LOG_TAIL = 6000  # characters of each log in a failed test's report


class Factory:
    """A factory fixture's value: ``factory(*args, **kwargs)`` builds ``make(workdir, *args, **kwargs)``
    (``workdir`` a fresh folder name), keeps it, so that a failed start is still stopped, and returns it
    started; the keyword arguments named in ``start_args`` go to its ``start()``."""

    def __init__(self, make: Callable[..., Any], workdir: Path, name: str, start_args: tuple[str, ...] = ()) -> None:
        self.make, self.workdir, self.name, self.start_args = make, workdir, name, start_args
        self.started: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = {key: kwargs.pop(key) for key in self.start_args if key in kwargs}
        thing = self.make(self.workdir / f"{self.name}{len(self.started)}", *args, **kwargs)
        self.started.append(thing)
        return thing.start(**start)

    def failure_logs(self) -> str:
        """The log tail of everything started that keeps a log (read by pytest_runtest_makereport)."""
        return "\n".join(f"--- {thing.log_path} (tail) ---\n{thing.logs()[-LOG_TAIL:]}"
                         for thing in self.started if hasattr(thing, "logs"))

    def close(self) -> None:
        for thing in reversed(self.started):
            thing.close()


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[Callable[..., Factory]]:
    """``factory(make, name, start_args=())`` -> a :class:`Factory` working in ``tmp_path``; everything
    its factories started is stopped at teardown."""
    made: list[Factory] = []

    def new(make: Callable[..., Any], name: str, start_args: tuple[str, ...] = ()) -> Factory:
        made.append(Factory(make, tmp_path, name, start_args))
        return made[-1]

    yield new
    for each in reversed(made):
        each.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report gets the log tails of every fixture value with a ``failure_logs()``
    (every :class:`Factory`, and e.g. the alerting stack of tests/ops/test_alerting_e2e.py)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            logs = getattr(value, "failure_logs", None)
            if callable(logs):
                report.sections.append((f"logs ({name})", logs()))


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
def rtsp_server(_rtsp_available: None, factory: Callable[..., Factory], tmp_path: Path) -> Factory:
    return factory(lambda _workdir, **kwargs: RtspServer(**{"log_dir": tmp_path, **kwargs}), "rtsp")


@pytest.fixture
def hls_server(factory: Callable[..., Factory], test_clip: Path) -> Factory:
    """``hls_server(clip=None, **kwargs)``: the session's test clip unless ``clip`` is given."""
    return factory(lambda workdir, clip=None, **kwargs: HlsServer(clip or test_clip, workdir, **kwargs), "hls")


def _daemon_process(workdir: Path, streams: Any, *, env: dict[str, str] | None = None, **kwargs: Any) -> DaemonProcess:
    if isinstance(streams, (dict, str)):
        config = streams
    else:
        config = daemon_config(streams, kwargs.pop("port", None) or free_port(), **kwargs)
    return DaemonProcess(workdir, config, env=env)


@pytest.fixture
def daemon(factory: Callable[..., Factory]) -> Factory:
    """``daemon(streams, wait="healthz", env=None, **daemon_config_kwargs)`` -> a started DaemonProcess.

    ``streams`` may also be a whole config dict or YAML text (then used as is).
    """
    return factory(_daemon_process, "daemon", start_args=("wait",))
