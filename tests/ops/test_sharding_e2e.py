"""Sharding with real daemons on loopback: several instances read one config, each runs its shard.

Every instance gets the same config text; only its environment differs, as in the StatefulSet
(``POD_NAME`` from the downward API, here also the metrics port so that they fit on one host).
Sources are cheap lavfi pictures and the engine is the classical one, so a dozen streams fit on two
shared cores. Every wait is bounded.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml
from monitoring_stack import PROMETHEUS, Prometheus, missing_binaries
from servers import REPO, DaemonProcess, Scrape, daemon_config, free_port, wait_until

from monitor.sharding import assign, owner

pytestmark = pytest.mark.slow

URL = "lavfi:testsrc2=size=320x240:rate=10"
SHARDS_EXAMPLE = REPO / "prometheus" / "prometheus.shards.example.yml"
CONVERGE_S = 90.0  # streams open in ~1 s; the first window needs 0.7 s of frames; slack for a loaded machine


def shared_config(names: list[str], shards: int) -> str:
    """One config for every instance, as a ConfigMap would carry it."""
    config = daemon_config([{"name": n, "url": URL} for n in names], 0, prefer=["classical"])
    config["metrics"]["listen"] = "127.0.0.1:${VQA_PORT}"
    config["shard"] = {"count": shards, "index": "${POD_NAME}"}
    return yaml.safe_dump(config, sort_keys=False)


class Fleet:
    """``vqa-monitor-0``, ``-1``, ...: real daemons on their own ports, one config text."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.instances: list[DaemonProcess] = []

    def start(self, config: str) -> DaemonProcess:
        index, port = len(self.instances), free_port()
        process = DaemonProcess(self.workdir / f"vqa-monitor-{index}", config, port=port,
                                env={"POD_NAME": f"vqa-monitor-{index}", "VQA_PORT": str(port)})
        self.instances.append(process)
        return process.start(wait="healthz")

    def reload(self, config: str) -> None:
        for process in self.instances:
            process.reload(config)

    def scrapes(self) -> list[Scrape]:
        for process in self.instances:
            process.assert_running()
        return [process.scrape() for process in self.instances]

    def close(self) -> None:
        for process in self.instances:
            process.close()

    def failure_logs(self) -> str:
        return "\n".join(f"--- {p.log_path} (tail) ---\n{p.logs()[-3000:]}" for p in self.instances)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


def stream_labels(scrape: Scrape) -> set[str]:
    """Every stream this instance has any series of."""
    return {value for (_, labels) in scrape.samples for key, value in labels if key == "stream"}


def placement(fleet: Fleet, names: list[str]) -> dict[str, list[int]]:
    """Which instances publish series of each stream."""
    scrapes = fleet.scrapes()
    return {n: [i for i, s in enumerate(scrapes) if n in stream_labels(s)] for n in names}


def converged(fleet: Fleet, names: list[str], shards: int) -> bool:
    """Each instance runs exactly its HRW shard, says so in its shard metrics, and scored every stream."""
    expected = assign(names, shards)
    for index, scrape in enumerate(fleet.scrapes()):
        if stream_labels(scrape) != set(expected[index]):
            return False
        if scrape.get("vqa_shard_info", shard=str(index), shards=str(shards)) != 1.0:
            return False
        if scrape.get("vqa_streams_owned") != len(expected[index]):
            return False
        if any((scrape.get("vqa_windows_scored_total", stream=n) or 0) < 1 for n in expected[index]):
            return False
    return True


def test_three_then_four_shards_run_every_stream_exactly_once(fleet: Fleet) -> None:
    names = [f"ch{i:02d}" for i in range(12)]
    config = shared_config(names, 3)
    for _ in range(3):
        fleet.start(config)
    started = time.monotonic()
    wait_until(lambda: converged(fleet, names, 3), CONVERGE_S, interval=0.5, what="3 shards converged")
    print(f"\n[sharding] 3 instances, 12 streams: every stream scored by its shard "
          f"{time.monotonic() - started:.1f} s after start; {dict(assign(names, 3))}")
    where = placement(fleet, names)
    assert all(len(where[n]) == 1 for n in names), where  # none twice, none missing
    assert {n: where[n][0] for n in names} == {n: owner(n, 3) for n in names}
    for index, process in enumerate(fleet.instances):
        # the unowned streams were never opened: no stream_start line for them
        opened = {e["stream"] for e in process.events() if e.get("event") == "stream_start"}
        assert opened == {n for n in names if owner(n, 3) == index}, (index, opened)
    before = {n: fleet.scrapes()[owner(n, 3)].get("vqa_windows_scored_total", stream=n) for n in names}

    # Four shards, by a SIGHUP reload of the three and a fourth instance; the same reload removes a
    # stream and adds two, which must land on the instances HRW picks.
    new_names = [n for n in names if n != "ch00"] + ["ch12", "ch13"]
    new_config = shared_config(new_names, 4)
    fleet.reload(new_config)
    fleet.start(new_config)
    started = time.monotonic()
    wait_until(lambda: converged(fleet, new_names, 4), CONVERGE_S, interval=0.5, what="4 shards converged")
    print(f"[sharding] reloaded to 4 shards: converged in {time.monotonic() - started:.1f} s")
    kept = [n for n in names if n in new_names]
    moved = {n for n in kept if owner(n, 3) != owner(n, 4)}
    where = placement(fleet, new_names)
    assert all(len(where[n]) == 1 for n in new_names), where
    assert {n for n in kept if where[n][0] != owner(n, 3)} == moved  # moved exactly where HRW predicts
    assert all(where[n] == [3] for n in moved)  # and only onto the new shard
    print(f"[sharding] 3 -> 4 shards: moved {sorted(moved)} ({len(moved)} of {len(kept)}; HRW predicted the same)")
    assert 0 < len(moved) < len(kept)
    scrapes = fleet.scrapes()
    for n in set(kept) - moved:  # untouched streams kept running: their counters went on, no restart
        assert scrapes[owner(n, 4)].get("vqa_windows_scored_total", stream=n) >= before[n], n
        process = fleet.instances[owner(n, 4)]
        assert sum(1 for e in process.events() if e.get("event") == "stream_start" and e.get("stream") == n) == 1
    for index, process in enumerate(fleet.instances[:3]):
        changes = [e for e in process.events() if e.get("event") == "shard" and e.get("previous_shard")]
        assert changes and changes[-1]["shard"] == f"{index}/4" and changes[-1]["previous_shard"] == f"{index}/3"


def example_prometheus(workdir: Path, targets: list[str]) -> Prometheus:
    """prometheus/prometheus.shards.example.yml's static job, pointed at ``targets``, at test timings."""
    example = yaml.safe_load(SHARDS_EXAMPLE.read_text())
    job = next(j for j in example["scrape_configs"] if j["job_name"] == "vqa-monitor")
    job.update(static_configs=[{"targets": targets}], scrape_interval="1s", scrape_timeout="1s")
    prom = Prometheus(workdir, targets)
    prom.config_path.write_text(yaml.safe_dump(
        {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [job]}))
    return prom


@pytest.fixture
def shards_prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    reason = missing_binaries(PROMETHEUS)
    if reason:
        pytest.skip(reason)
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        started.append(example_prometheus(tmp_path / "prometheus", targets))
        return started[-1].start()

    yield start
    for prom in started:
        prom.close()


def test_dashboards_aggregate_across_shards(fleet: Fleet, shards_prometheus) -> None:
    """Every panel query of the committed dashboards against a real Prometheus, configured as the
    shipped multi-shard example, scraping two shards: each per-stream series comes from the one
    instance that runs the stream, and the overview's aggregates add both instances up."""
    pytest.importorskip("grafana_foundation_sdk", reason="pip install grafana-foundation-sdk (test extra)")
    from test_dashboards import QUERY_DEADLINE_S, _check_answer, _committed_targets, _run_panel_query, needs_audio

    names = ["cam-a", "cam-b", "cam-c", "cam-d", "cam-e"]
    assert all(assign(names, 2).values()), "both shards need a stream"
    config = shared_config(names, 2)
    for _ in range(2):
        fleet.start(config)
    wait_until(lambda: converged(fleet, names, 2), CONVERGE_S, interval=0.5, what="2 shards converged")
    prom = shards_prometheus([f"127.0.0.1:{p.port}" for p in fleet.instances])
    instances = {f"127.0.0.1:{p.port}": i for i, p in enumerate(fleet.instances)}
    # the test sources carry no audio: test_dashboards checks the audio panels on a stream with a tone
    targets = [t for t in _committed_targets() if not needs_audio(t)]
    runs = [(t, s) for t in targets for s in (names if t["per_stream"] else [None])]

    started = time.monotonic()
    while True:
        fleet.scrapes()  # all still running
        now = time.time()
        failures = {}
        for target, stream in runs:
            expr, answer = _run_panel_query(prom, target, stream, now)
            problem = _check_answer(answer, target, stream)
            if problem is None and stream is not None:
                seen = {instances[s["metric"]["instance"]] for s in answer["data"]["result"] if "instance" in s["metric"]}
                if seen - {owner(stream, 2)}:
                    problem = f"series of {stream} from instances {seen}, expected only {owner(stream, 2)}"
            if problem:
                failures[(target["dashboard"], target["panel"], target["ref_id"], stream, expr)] = problem
        hard = {k: v for k, v in failures.items() if not v.startswith(("empty", "only NaN"))}
        assert not hard, "\n".join(f"{k}: {v}" for k, v in hard.items())
        if not failures or time.monotonic() - started > QUERY_DEADLINE_S:
            break
        time.sleep(1.0)
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
    print(f"\n[sharding] {len(runs)} dashboard queries over 2 shards returned data "
          f"{time.monotonic() - started:.1f} s after Prometheus started")

    # The overview's per-stream panels list each stream once (from its owner), aggregates add both up.
    aqs = prom.query("vqa_aqs")["data"]["result"]
    assert sorted(s["metric"]["stream"] for s in aqs) == sorted(names)
    assert prom.value("sum(vqa_streams_owned)") == len(names)
    assert prom.value('count(up{job="vqa-monitor"} == 1)') == 2  # the job VqaMonitorDown matches
    assert prom.value("count(vqa_shard_info)") == 2
    assert prom.value('count(count by (instance) (vqa_stream_up))') == 2
    # both instances feed "Windows scored / s (all streams)"
    assert prom.value("count(sum by (instance) (rate(vqa_windows_scored_total[10s])) > 0)") == 2


class CommandLineShard(DaemonProcess):
    """The daemon started with ``--shard I/N`` on its command line (systemd hosts run it this way)."""

    def __init__(self, workdir: Path, config: str, port: int, shard: str) -> None:
        super().__init__(workdir, config, port=port, env={"VQA_PORT": str(port), "POD_NAME": "0"})
        self.shard = shard

    def start(self, wait: str | None = "healthz", timeout: float = 30.0) -> "CommandLineShard":
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(self.config_path), "--log-format", "json",
             "--shard", self.shard], cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_http("/healthz", timeout)
        return self


def test_command_line_shard_wins_over_the_config_and_survives_a_reload(tmp_path: Path) -> None:
    names = [f"cam{i}" for i in range(6)]
    assert assign(names, 2)[1] and assign(names, 2)[1] != assign(names, 3)[0]  # the two readings differ
    process = CommandLineShard(tmp_path / "host-b", shared_config(names, 3), free_port(), "1/2")
    try:
        process.start()

        def runs(expected: list[str]) -> bool:
            scrape = process.scrape()
            return (stream_labels(scrape) == set(expected) and scrape.get("vqa_shard_info", shard="1", shards="2") == 1
                    and all((scrape.get("vqa_windows_scored_total", stream=n) or 0) >= 1 for n in expected))

        wait_until(lambda: runs(assign(names, 2)[1]), CONVERGE_S, interval=0.5, what="shard 1/2 of the command line")
        more = names + ["cam6", "cam7", "cam8"]
        process.reload(shared_config(more, 5))  # the file's shard section changes; --shard still wins
        wait_until(lambda: runs(assign(more, 2)[1]), CONVERGE_S, interval=0.5, what="shard 1/2 after the reload")
    finally:
        process.close()
