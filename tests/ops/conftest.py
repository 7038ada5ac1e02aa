from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from monitoring_stack import (  # noqa: E402
    PROMETHEUS,
    Prometheus,
    missing_binaries,
    degraded_clip,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report gets the log tails of every fixture value with a ``failure_logs()``
    (e.g. the alerting stack of test_alerting_e2e.py: daemon, Prometheus, Alertmanager, webhook)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            logs = getattr(value, "failure_logs", None)
            if callable(logs):
                report.sections.append((f"logs ({name})", logs()))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ops_clips")


@pytest.fixture(scope="session")
def degraded_demo_clip(clip_dir: Path) -> Path:
    """monitor/demo/demo.mp4 starved of bits, big blocks (a clearly degraded source), made once per session."""
    return degraded_clip(clip_dir / "demo_blocky6_crf40.mp4")


class _Factory:
    """Calls ``make(workdir, *args, **kwargs)`` and starts the result; ``close()`` stops them all;
    ``failure_logs()`` feeds pytest_runtest_makereport above."""

    def __init__(self, make: Callable[..., Any], workdir: Path, name: str) -> None:
        self.make, self.workdir, self.name = make, workdir, name
        self.started: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        thing = self.make(self.workdir / f"{self.name}{len(self.started)}", *args, **kwargs)
        self.started.append(thing)
        return thing.start()

    def failure_logs(self) -> str:
        return "\n".join(f"--- {thing.log_path} (tail) ---\n{thing.logs()[-4000:]}" for thing in self.started)

    def close(self) -> None:
        for thing in self.started:
            thing.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus(targets, rule_files=(), alertmanager=None)`` -> a started Prometheus (1 s scrape and
    evaluation), stopped at teardown."""
    reason = missing_binaries(PROMETHEUS)
    if reason:
        pytest.skip(reason)
    factory = _Factory(Prometheus, tmp_path, "prometheus")
    yield factory
    factory.close()
