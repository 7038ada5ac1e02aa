"""Coverage-guided fuzz targets (atheris, libFuzzer) for the config loader and the URL masking.

    .venv/bin/python tests/fuzz/atheris_targets.py config -max_total_time=600 -rss_limit_mb=2048 -timeout=10
    .venv/bin/python tests/fuzz/atheris_targets.py masking -max_total_time=600 -timeout=10

Any uncaught exception, an input running past ``-timeout`` seconds or memory past ``-rss_limit_mb`` is
a finding: libFuzzer stops, writes the input to ``crash-*``/``timeout-*`` and exits non-zero.
tests/fuzz/test_atheris.py runs both targets for a bounded time in CI.
"""
from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["monitor", "yaml"]):
    from monitor.config import ConfigError, parse_config
    from monitor.redact import redact_text, redact_url

SECRET = "ZQXsecret42"
URL_TEMPLATES = [
    "rtsp://user:{s}@cam:554/live", "rtsp://{s}@cam/live", "https://cdn/x.m3u8?token={s}", "rtmp://h/app/{s}",
    "https://cdn/x.m3u8#sign={s}", "http://h/x?a=1&auth_key={s}&b=2", "rtsp://admin:{s}/x@cam/live",
]


def config_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates(len(data))
    try:
        parse_config(text, environ={"SET": "value"})
    except ConfigError as exc:
        assert all("\n" not in problem for problem in exc.problems), exc.problems


def masking_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    template = URL_TEMPLATES[fdp.ConsumeIntInRange(0, len(URL_TEMPLATES) - 1)]
    noise = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 4096))
    url = template.format(s=SECRET)
    masked = redact_url(url)
    assert SECRET not in masked, masked
    text = noise[: len(noise) // 2] + " " + url + " " + noise[len(noise) // 2:]
    out = redact_text(text, [url])
    assert SECRET not in out or SECRET in noise, out
    redact_text(noise)  # any text at all: no exception, linear time (-timeout catches a blow-up)


TARGETS = {"config": config_target, "masking": masking_target}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
