from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from monitoring_stack import (  # noqa: E402
    PROMETHEUS,
    Prometheus,
    missing_binaries,
    degraded_clip,
)


@pytest.fixture(scope="session")
def degraded_demo_clip(clip_dir: Path) -> Path:
    """monitor/demo/demo.mp4 starved of bits, big blocks (a clearly degraded source), made once per session."""
    return degraded_clip(clip_dir / "demo_blocky8_crf40.mp4")


@pytest.fixture
def prometheus(factory: Callable) -> Callable[..., Prometheus]:
    """``prometheus(targets, rule_files=(), alertmanager=None)`` -> a started Prometheus (1 s scrape and
    evaluation), stopped at teardown."""
    reason = missing_binaries(PROMETHEUS)
    if reason:
        pytest.skip(reason)
    return factory(Prometheus, "prometheus")
