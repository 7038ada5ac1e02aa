"""``vqa-monitor``: the daemon (default), ``--check``, and subcommands.

    vqa-monitor --config config.yaml              run the daemon in the foreground
    vqa-monitor --check --config config.yaml      validate; exit 0, or 2 listing every problem
    vqa-monitor --shard 2/4 --config config.yaml  run shard 2 of 4 (monitor/sharding.py)
    vqa-monitor --check --shards 4 ...            also print which streams each of 4 shards runs
    vqa-monitor score FILE ...                    score video files offline (monitor/score_files.py)
    vqa-monitor bench ...                         the benchmark tool of a source checkout (benchmarks/bench.py)

``score`` registers its own parser (``register(subparsers)``, which sets ``handler=``, a function
``args -> int`` exit code). ``bench`` is not part of the installed package: the tool is loaded from
the checkout only when the command runs, and parses its own arguments.

Exit codes: 0 fine, 1 runtime failure (no engine, port in use), 2 bad usage or bad config.
"""
from __future__ import annotations

import argparse
import errno
import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Sequence

from monitor.logs import LOG_FORMATS, LOG_LEVELS

if TYPE_CHECKING:
    from monitor.sharding import Shard

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BENCH_TOOL = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("vqa-monitor")
    except PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, ValueError):
            return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqa-monitor",
        description="Real-time no-reference video quality monitor: scores live streams and publishes "
        "Prometheus metrics on /metrics (plus /healthz and /readyz).",
        epilog="Signals: SIGTERM/SIGINT stop within 5 s; SIGHUP reloads the config file.",
    )
    parser.add_argument("--config", "-c", metavar="FILE", default="config.yaml",
                        help="configuration file (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration and exit: 0 if valid, 2 listing every problem")
    parser.add_argument("--shard", metavar="I/N", type=_shard_arg,
                        help="run only shard I of N (counted from 0; I may be a StatefulSet pod name such as "
                        "vqa-monitor-3); overrides the config's shard: section")
    parser.add_argument("--shards", metavar="N", type=_shard_count_arg,
                        help="with --check: print which streams each of N shards runs")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="stderr log lines as text or JSON Lines (default: %(default)s)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="(default: %(default)s)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from monitor import score_files

    score_files.register(subparsers)
    subparsers.add_parser("bench", add_help=False,  # the tool parses the rest, --help included
                          help="measure engine throughput, the per-frame comparison and concurrent live streams "
                          "(from a source checkout)")
    return parser


def load_bench_tool() -> ModuleType | None:
    """The benchmark tool (``benchmarks/bench.py`` of the checkout this package runs from), or None
    when there is none (an installed wheel)."""
    if not BENCH_TOOL.is_file():
        return None
    spec = importlib.util.spec_from_file_location("vqa_monitor_bench", BENCH_TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_bench(argv: Sequence[str]) -> int:
    tool = load_bench_tool()
    if tool is None:
        print("vqa-monitor bench: the benchmark tool is not installed with the package; run it from a source "
              "checkout (benchmarks/bench.py)", file=sys.stderr)
        return EXIT_FAILURE
    return int(tool.main(argv))


def _shard_arg(text: str) -> "Shard":
    from monitor.sharding import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard_count_arg(text: str) -> int:
    from monitor.sharding import MAX_SHARDS

    if not text.isdigit() or not 1 <= int(text) <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a shard count from 1 to {MAX_SHARDS}")
    return int(text)


def run_check(config_path: str, shard: "Shard | None" = None, shards: int | None = None) -> int:
    from monitor.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return EXIT_USAGE
    names = ", ".join(s.name for s in config.streams) or "none"
    print(f"{config_path}: OK ({len(config.streams)} stream(s): {names}; metrics on {config.metrics.listen})")
    this = shard or config.shard.shard
    count = shards or this.count
    if count > 1:
        print_assignment([s.name for s in config.streams], count, this if this.count == count else None,
                         config.shard.capacity)
    return EXIT_OK


def print_assignment(names: list[str], count: int, this: "Shard | None", capacity: int | None) -> None:
    from monitor.sharding import assign

    for index, owned in assign(names, count, capacity).items():
        mark = "  <- this instance" if this is not None and this.index == index else ""
        print(f"shard {index}/{count} ({len(owned)} stream(s)): {', '.join(owned) or '-'}{mark}")
    if capacity is not None and len(names) > count * capacity:
        print(f"warning: {len(names)} streams exceed {count} shard(s) x capacity {capacity} = {count * capacity} "
              "places; some shards run more than their capacity", file=sys.stderr)


def _stdout_failure_is_an_error(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """A full or closed stdout (``> /dev/full``, a closed pipe) ends with one error line and exit 1, not a
    traceback; stdout is then pointed at /dev/null so that the interpreter's last flush stays quiet."""
    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            code = main(argv)
            sys.stdout.flush()
            return code
        except OSError as exc:
            if exc.errno not in _STDOUT_ERRNOS:
                raise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print(f"vqa-monitor: cannot write to standard output: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILURE

    return wrapper


_STDOUT_ERRNOS = (errno.ENOSPC, errno.EPIPE, errno.EIO, errno.EDQUOT, errno.EFBIG)


@_stdout_failure_is_an_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return run_bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler = getattr(args, "handler", None)
    if args.command and handler is not None:
        return int(handler(args) or 0)
    if args.check:
        return run_check(args.config, args.shard, args.shards)
    if args.shards is not None:
        parser.error("--shards only applies to --check (the daemon takes --shard I/N)")
    from monitor.daemon import run_daemon

    return run_daemon(args.config, log_format=args.log_format, log_level=args.log_level, shard=args.shard)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
