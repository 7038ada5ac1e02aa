"""Stream sharding: rendezvous hashing, where the shard comes from, and the errors users see."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import build_parser
from monitor.config import ConfigError, parse_config
from monitor.daemon import Daemon
from monitor.sharding import SINGLE, Shard, assign, owner, parse_index, parse_shard, placement

REPO = Path(__file__).resolve().parents[2]
NAMES = [f"channel-{i:04d}" for i in range(3000)]


def moved(names: list[str], before: int, after: int) -> dict[str, tuple[int, int]]:
    return {n: (owner(n, before), owner(n, after)) for n in names if owner(n, before) != owner(n, after)}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 12])
def test_adding_a_shard_moves_about_one_in_n_plus_1_streams_all_onto_the_new_shard(count: int) -> None:
    changes = moved(NAMES, count, count + 1)
    assert {to for _, to in changes.values()} == {count}  # only onto the new shard, never between old ones
    fraction = len(changes) / len(NAMES)
    expected = 1 / (count + 1)
    # binomial(3000, p): 4 standard deviations
    tolerance = 4 * (expected * (1 - expected) / len(NAMES)) ** 0.5
    assert abs(fraction - expected) <= tolerance, (count, fraction, expected)
    print(f"\n[sharding] {count} -> {count + 1} shards: {len(changes)} of {len(NAMES)} streams moved "
          f"({fraction:.3f}; 1/(N+1) = {expected:.3f})")


def test_removing_the_last_shard_moves_only_its_streams() -> None:
    changes = moved(NAMES, 5, 4)
    assert {frm for frm, _ in changes.values()} == {4}
    assert len(changes) == sum(1 for n in NAMES if owner(n, 5) == 4)


def test_every_stream_has_exactly_one_owner_and_shards_are_roughly_even() -> None:
    assert set(placement(NAMES, 4).values()) == {0, 1, 2, 3}
    assert sum(len(v) for v in assign(NAMES, 4).values()) == len(NAMES)
    loads = [len(v) for v in assign(NAMES, 4).values()]
    assert sum(loads) == len(NAMES)
    assert max(loads) - min(loads) < 0.15 * len(NAMES) / 4, loads


def test_assignment_does_not_depend_on_the_process_hash_seed() -> None:
    """Python's hash() of a str is salted per process; two instances must agree anyway."""
    code = ("import json; from monitor.sharding import assign; "
            f"print(json.dumps(assign([f'cam{{i}}' for i in range(200)], 5)))")
    answers = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                             check=True)
        answers.append(json.loads(out.stdout))
    assert answers[0] == answers[1]
    assert answers[0] == {str(k): v for k, v in assign([f"cam{i}" for i in range(200)], 5).items()}


def test_one_shard_owns_everything() -> None:
    assert assign(["a", "b"], 1) == {0: ["a", "b"]} == assign(["a", "b"], 1, capacity=1)


# ------------------------------------------------------------------------------------------------
# Bounded loads (shard.capacity)
# ------------------------------------------------------------------------------------------------
FIVE_HUNDRED = [f"ch-{i:03d}" for i in range(1, 501)]


def test_plain_hrw_is_uneven_with_few_streams_per_shard() -> None:
    """Why capacity exists: 500 streams on 125 shards, mean 4."""
    loads = [len(v) for v in assign(FIVE_HUNDRED, 125).values()]
    assert max(loads) >= 8 and min(loads) == 0, (max(loads), min(loads))


@pytest.mark.parametrize("count, capacity", [(125, 4), (140, 4), (56, 10), (7, 80)])
def test_capacity_bounds_every_shard(count: int, capacity: int) -> None:
    loads = [len(v) for v in assign(FIVE_HUNDRED, count, capacity).values()]
    assert sum(loads) == 500 and max(loads) <= capacity


@pytest.mark.parametrize("count, capacity", [(140, 4), (56, 10)])
def test_capacity_with_headroom_moves_little(count: int, capacity: int) -> None:
    """About 10% spare places: adding a shard moves at most ~3x what plain HRW moves, mostly onto the
    new shard; adding or removing a stream moves (almost) nothing else."""
    before = placement(FIVE_HUNDRED, count, capacity)
    after = placement(FIVE_HUNDRED, count + 1, capacity)
    changes = [n for n in FIVE_HUNDRED if before[n] != after[n]]
    hrw = len(FIVE_HUNDRED) / (count + 1)
    assert 0 < len(changes) <= 3 * hrw + 3, (len(changes), hrw)
    assert sum(after[n] == count for n in changes) >= len(changes) / 2
    for names in (FIVE_HUNDRED + ["zz-new"], FIVE_HUNDRED + ["aa-new"], FIVE_HUNDRED[1:]):
        other = placement(names, count, capacity)
        assert sum(1 for n in names if n in before and other[n] != before[n]) <= 2
    print(f"\n[sharding] 500 streams, capacity {capacity}: {count} -> {count + 1} shards moved {len(changes)} "
          f"(plain HRW ~{hrw:.1f})")


def test_capacity_overflow_still_places_every_stream() -> None:
    where = placement(FIVE_HUNDRED[:20], 3, capacity=5)
    assert len(where) == 20 and set(where.values()) <= {0, 1, 2}
    loads = [len(v) for v in assign(FIVE_HUNDRED[:20], 3, capacity=5).values()]
    assert min(loads) == 5 and sum(loads) == 20  # every shard full first, then the rest on their first choice


def test_daemon_and_check_use_the_capacity(tmp_path: Path) -> None:
    config = parse_config(config_text("shard: {count: 2, capacity: 3}"))
    owned = [[s.name for s in Daemon(config, shard=Shard(i, 2)).owned_streams(config)] for i in range(2)]
    assert sorted(owned[0] + owned[1]) == sorted(s.name for s in config.streams)
    assert [len(o) for o in owned] == [3, 3]
    path = tmp_path / "config.yaml"
    path.write_text(config_text("shard: {count: 2, capacity: 2}"))
    out = run_cli("--check", "--config", str(path))
    assert out.returncode == 0 and "warning: 6 streams exceed 2 shard(s) x capacity 2 = 4 places" in out.stderr


def test_capacity_placement_ignores_the_order_in_the_file() -> None:
    shuffled = FIVE_HUNDRED[::-1]
    assert placement(shuffled, 56, 10) == placement(FIVE_HUNDRED, 56, 10)


# ------------------------------------------------------------------------------------------------
# Where the shard comes from
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, index", [(0, 0), (3, 3), ("2", 2), ("vqa-monitor-3", 3), ("vqa-monitor-0", 0),
                                          ("my.monitor-12", 12), (" 7 ", 7)])
def test_parse_index(value, index) -> None:
    assert parse_index(value) == index


@pytest.mark.parametrize("value", [-1, "-1", "vqa-monitor", "vqa-monitor-x", "", True, 1.5, None, "Vqa-1"])
def test_parse_index_rejects(value) -> None:
    with pytest.raises(ValueError, match="shard number"):
        parse_index(value)


@pytest.mark.parametrize("text, shard", [("0/1", Shard(0, 1)), ("2/4", Shard(2, 4)),
                                         ("vqa-monitor-3/4", Shard(3, 4))])
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize("text, why", [("3", "expected I/N"), ("/4", "expected I/N"), ("1/x", "whole number"),
                                       ("4/4", "out of range"), ("1/0", "from 1 to 1000"), ("a/2", "shard number")])
def test_parse_shard_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_shard(text)


def config_text(shard: str, streams: int = 6) -> str:
    lines = ["metrics: {listen: '127.0.0.1:9108'}", shard, "streams:"]
    lines += [f"  - {{name: cam{i}, url: 'lavfi:testsrc2=size=320x240:rate=10'}}" for i in range(streams)]
    return "\n".join(lines) + "\n"


def test_config_section_with_env_and_pod_name() -> None:
    text = config_text("shard: {count: '${SHARDS}', index: '${POD_NAME}'}")
    config = parse_config(text, environ={"SHARDS": "4", "POD_NAME": "vqa-monitor-2"})
    assert config.shard.shard == Shard(2, 4)
    assert parse_config(config_text("")).shard.shard == SINGLE  # no section: one shard runs everything


@pytest.mark.parametrize("section, problem", [
    ("shard: {count: 3, index: 3}", "shard.index: 3: shard 3 does not exist with shard.count 3 (shards run from 0 to 2)"),
    ("shard: {count: 3, index: web-x}", "shard.index: 'web-x': expected a shard number"),
    ("shard: {count: 0}", "shard.count: 0: Input should be greater than or equal to 1"),
    ("shard: {cont: 2}", "shard.cont: unknown key (did you mean 'count'?)"),
    ("shard: {index: '${POD_NAME}'}", "shard.index: ${POD_NAME}: environment variable POD_NAME is not set"),
])
def test_config_section_errors_name_the_key(section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(section), environ={})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/3"], "argument --shard: '3/3': shard index 3 is out of range for 3 shard(s)"),
    (["--shard", "two/3"], "argument --shard: 'two/3': expected a shard number"),
    (["--shard", "2"], "argument --shard: '2': expected I/N"),
    (["--check", "--shards", "0"], "argument --shards: '0': expected a shard count from 1 to 1000"),
    (["--shards", "3"], "--shards only applies to --check"),
])
def test_cli_shard_errors_exit_2_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(""))
    out = run_cli("--config", str(path), *args)
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_cli_config_shard_error_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text("shard: {count: 2, index: '${POD_NAME}'}"))
    for args in (["--check"], []):  # --check, and the daemon itself (before it opens anything)
        out = run_cli("--config", str(path), *args, env={"POD_NAME": "vqa-monitor-7"})
        assert out.returncode == 2, out
        assert "shard.index: 'vqa-monitor-7': shard 7 does not exist with shard.count 2" in out.stderr
        assert "Traceback" not in out.stderr


def test_check_prints_the_assignment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text("shard: {count: 3, index: '${POD_NAME:-vqa-monitor-1}'}", streams=9))
    names = [f"cam{i}" for i in range(9)]
    out = run_cli("--check", "--config", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()[1:]
    expected = assign(names, 3)
    assert len(lines) == 3
    for index, line in enumerate(lines):
        assert line.startswith(f"shard {index}/3 ({len(expected[index])} stream(s)): {', '.join(expected[index]) or '-'}")
        assert line.endswith("<- this instance") == (index == 1)
    out = run_cli("--check", "--config", str(path), "--shards", "4")  # another count: no instance marked
    expected = assign(names, 4)
    assert out.stdout.splitlines()[1:] == [
        f"shard {i}/4 ({len(expected[i])} stream(s)): {', '.join(expected[i]) or '-'}" for i in range(4)]
    out = run_cli("--check", "--config", str(path), "--shard", "2/4")  # the command line wins over the config
    assert out.stdout.splitlines()[3].endswith("<- this instance")


def test_command_line_shard_overrides_the_config() -> None:
    args = build_parser().parse_args(["--shard", "vqa-monitor-1/2"])
    config = parse_config(config_text("shard: {count: 3, index: 0}"))
    daemon = Daemon(config, shard=args.shard)
    assert daemon.shard_of(config) == Shard(1, 2)
    assert [s.name for s in daemon.owned_streams(config)] == assign([s.name for s in config.streams], 2)[1]
    assert [s.name for s in Daemon(config).owned_streams(config)] == assign([s.name for s in config.streams], 3)[0]


def test_shipped_config_still_runs_every_stream() -> None:
    config = parse_config((REPO / "config.yaml").read_text(), base_dir=REPO)
    assert config.shard.shard == SINGLE
    assert Daemon(config).owned_streams(config) == list(config.streams)


def test_yaml_numbers_and_strings_agree() -> None:
    """count from an env var arrives as a string; YAML ints and quoted digits mean the same."""
    a = parse_config(config_text("shard: {count: 4, index: 1}"))
    b = parse_config(config_text("shard: {count: '4', index: '1'}"))
    assert a.shard == b.shard


def test_a_shard_left_empty_by_the_hashing_is_ready() -> None:
    """Hashing can leave a shard without streams; it must not block a StatefulSet rollout (readiness)."""
    config = parse_config(config_text("engine: {prefer: [classical]}", streams=1))
    empty = 1 - owner("cam0", 2)
    daemon = Daemon(config, shard=Shard(empty, 2))
    try:
        daemon.start_engine()
        assert not daemon.readiness()[0]  # streams not started yet: not ready, as without sharding
        daemon.start_streams()
        assert daemon.streams == {}
        assert daemon.readiness() == (True, f"ready: shard {empty}/2 runs none of the 1 configured streams")
        assert daemon.registry.get_sample_value("vqa_streams_owned") == 0
        assert daemon.registry.get_sample_value("vqa_shard_info", {"shard": str(empty), "shards": "2"}) == 1
    finally:
        daemon.shutdown()
