"""Time of the log masking (``monitor.redact.redact_text``) on adversarial texts of growing length.

    .venv/bin/python benchmarks/masking.py                      # the working tree's masking
    .venv/bin/python benchmarks/masking.py --module OLD.py      # another version of monitor/redact.py

A linear masking takes about twice as long for twice the text; a quadratic one four times.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

TEXTS = {
    "letters": lambda n: "a" * n,
    "scheme runs": lambda n: "rtsp://" + "a" * (n - 7),
    "a://": lambda n: "a://" * (n // 4),
    "user:pw pairs": lambda n: "rtsp://a:b" * (n // 10),
    "query pairs": lambda n: "?a=&" * (n // 4),
}
SIZES = (10_000, 20_000, 40_000, 100_000)


def load(path: Path | None):  # -> module
    if path is None:
        from monitor import redact

        return redact
    spec = importlib.util.spec_from_file_location("redact_under_test", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", type=Path, help="a monitor/redact.py file to time instead")
    parser.add_argument("--max-size", type=int, default=max(SIZES), help="skip longer texts (a quadratic version is slow)")
    args = parser.parse_args()
    redact = load(args.module)
    sizes = [n for n in SIZES if n <= args.max_size]
    print("| text | " + " | ".join(f"{n // 1000}k chars" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, make in TEXTS.items():
        cells = []
        for n in sizes:
            text = make(n)
            started = time.perf_counter()
            redact.redact_text(text)
            cells.append(f"{(time.perf_counter() - started) * 1000:.1f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
