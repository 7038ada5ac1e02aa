"""Coverage-guided fuzzing (atheris) of the config loader and the URL masking, for a bounded time.

CI gives each target ``VQA_ATHERIS_SECONDS`` (default 15) seconds; a longer run is the documented
command in tests/fuzz/atheris_targets.py. A finding (an exception, an input over 10 s, over 2 GB of
memory) fails the test and leaves the input in the test's temporary folder.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TARGETS = Path(__file__).resolve().parent / "atheris_targets.py"
SECONDS = int(os.environ.get("VQA_ATHERIS_SECONDS", "15"))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                reason="atheris is not installed (pip install 'vqa-monitor[test]'; it needs "
                                       "a binary wheel for this Python and platform)")


@pytest.mark.parametrize("target", ["config", "masking"])
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(TARGETS), target, f"-max_total_time={SECONDS}", "-rss_limit_mb=2048", "-timeout=10",
         "-print_final_stats=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 120, stdin=subprocess.DEVNULL)
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert result.returncode == 0 and not findings, (findings, result.stderr[-4000:])
    assert "Done " in result.stderr and " runs in " in result.stderr, result.stderr[-2000:]
