"""The metrics reference as code: METRICS in monitor/metrics.py -> committed docs/metrics.md.

    .venv/bin/python docs/build_metrics_reference.py          # rewrite docs/metrics.md
    .venv/bin/python docs/build_metrics_reference.py --check  # exit 1 if the committed file differs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.metrics import reference_markdown

OUT = Path(__file__).resolve().parent / "metrics.md"
COMMAND = ".venv/bin/python docs/build_metrics_reference.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args(argv)
    text = reference_markdown()
    if not args.check:
        OUT.write_text(text)
        return 0
    if not OUT.exists() or OUT.read_text() != text:
        print(f"docs/metrics.md is out of date (run {COMMAND})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
