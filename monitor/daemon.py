"""The daemon's lifecycle: start, run, reload on SIGHUP, stop on SIGTERM/SIGINT within 5 s.

Start order: HTTP endpoint first (``/healthz`` answers while the engine loads, ``/readyz`` says why it
is not ready yet), then the engine (the fallback chain), the scheduler, and one reader per stream.

Per stream the daemon also runs the signal checks (:class:`StreamChecks`: black, frozen, no video,
frame rate, bitrate, fed with every decoded frame and packet) and the quality state
(:class:`QualityTracker`: ok/warn/crit with hysteresis and incident log lines, fed with every scored
window), both published as gauges.

Reload (SIGHUP) re-reads the config file. An invalid file is logged problem by problem and the
running configuration stays (``vqa_config_last_reload_successful`` 0). Otherwise: new streams
start, removed ones stop and all their series disappear, changed ones (any option, including a
changed ``defaults:``, ``checks:`` or ``quality:`` value that applies to them) restart with fresh
signal checks and quality state and keep their series; a changed ``engine:`` section loads the new
engine and swaps it in (the old one stays if the new one fails). A changed ``metrics``, ``web`` or
``snapshots`` section needs a restart (logged; the running values stay).

HLS (:mod:`monitor.hls`): every HLS stream gets a playlist watcher (:class:`PlaylistHealth`, added and
dropped with the stream). A ladder (``hls.variants`` other than ``auto``) runs as one stream per
variant, ``NAME/RENDITION``; its master playlist watcher asks for :meth:`Daemon.update_ladders` when
the variants change, and the main loop applies that like a SIGHUP change (:meth:`Daemon._apply_streams`).

Under systemd (``Type=notify``), :meth:`Daemon.notify_systemd` wires a :class:`SystemdNotify` into the
lifecycle hooks: READY=1 once the engine is loaded and the metrics endpoint listens, WATCHDOG=1 from
the main loop only while :meth:`Daemon.health` holds, STATUS= lines, RELOADING=1 ... READY=1 around a
reload and STOPPING=1 at shutdown.

Stop: every thread is told to stop, then joined within a shared deadline. A reader blocked inside
FFmpeg returns at its read timeout at the latest; the daemon does not wait for it (daemon threads).

Integration points: :attr:`Daemon.frame_observers` (per decoded frame, see
:class:`monitor.ingest.IngestObserver`), :attr:`Daemon.window_observers` (per scored window, see
:class:`monitor.observers.WindowObserver`), :attr:`Daemon.on_ready` / :attr:`Daemon.on_tick` /
:attr:`Daemon.on_reloading` / :attr:`Daemon.on_reloaded` / :attr:`Daemon.on_stopping` (callables
without arguments, called on the main thread).
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from prometheus_client import CollectorRegistry

from monitor.config import Config, ConfigError, StreamConfig, base_dir_of, load_config
from monitor.ingest import IngestObserver, StreamReader
from monitor.logs import setup_logging
from monitor.metrics import Metrics
from monitor.notify import Notifier, SystemdNotify, watchdog_interval
from monitor.engine_selection import load_engine, model_dir_of
from monitor.localise import Localiser
from monitor.hls import Ladders, PlaylistHealth, watches_playlist
from monitor.observers import AudioChecks, QualityTracker, StreamChecks, WindowObserver
from monitor.scheduler import ScheduledStream, Scheduler
from monitor.server import MetricsServer
from monitor.snapshots import SnapshotWriter
from monitor.web.app import WebApp, build_web
from monitor.web.board import StreamBoard
from monitor.sharding import Shard, placement
from monitor.windows import WindowRing

log = logging.getLogger(__name__)

# Sections a reload cannot apply (the listening socket, the page and the snapshot writer are made once).
RESTART_ONLY_SECTIONS = ("metrics", "web", "snapshots")

STOP_DEADLINE_S = 3.0  # joins share this budget; the contract is "stopped within 5 s of SIGTERM"
TICK_S = 0.5
SCHEDULER_STALL_S = 60.0  # longer than any batch takes; a wedged engine call stops the watchdog pings


T = TypeVar("T")


@dataclass
class StreamRuntime:
    config: StreamConfig
    ring: WindowRing
    reader: StreamReader


class Daemon:
    def __init__(self, config: Config, config_path: str | Path | None = None, shard: Shard | None = None) -> None:
        self.config = config
        self.shard_override = shard  # --shard I/N; otherwise each config's own shard: section
        self._shard_empty = False  # streams are configured, none is this shard's (set when streams start)
        self.config_path = Path(config_path) if config_path is not None else None
        self.base_dir = base_dir_of(self.config_path) if self.config_path else None
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.frame_observers: list[IngestObserver] = []
        self.window_observers: list[WindowObserver] = []
        self.on_ready: list[Callable[[], None]] = []
        self.on_tick: list[Callable[[], None]] = []
        self.on_reloading: list[Callable[[], None]] = []
        self.on_reloaded: list[Callable[[], None]] = []
        self.on_stopping: list[Callable[[], None]] = []
        self.tick_s = TICK_S
        self.scheduler_stall_s = SCHEDULER_STALL_S
        self.checks = StreamChecks(self.metrics)
        self.quality = QualityTracker(self.metrics)
        self.frame_observers.append(self.checks)
        self.window_observers.append(self.quality)
        self.on_tick.append(lambda: self.checks.tick(time.monotonic()))
        self.audio = AudioChecks(self.metrics)  # monitor/audio.py: loudness, silence, clipping, missing audio
        self.frame_observers.append(self.audio)
        self.on_tick.append(lambda: self.audio.tick(time.monotonic()))
        self.streams: dict[str, StreamRuntime] = {}
        self.playlists = PlaylistHealth()  # HLS playlist watchers of the running streams
        self.ladders = Ladders(self.metrics, on_change=self.request_ladder_update)  # master playlist watchers
        self._ladder_update = threading.Event()
        self.scheduler: Scheduler | None = None
        self.engine_spec: str | None = None  # the spec the running engine was loaded from
        self.server: MetricsServer | None = None
        self.board: StreamBoard | None = None  # the status page's state (monitor.web)
        self.snapshot_writer: SnapshotWriter | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._lock = threading.Lock()

    # readiness -------------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, str]:
        if self.scheduler is None:
            return False, "engine not loaded yet"
        if self._stop.is_set():
            return False, "stopping"
        streams = list(self.streams.values())
        if self._shard_empty:  # hashing can leave a shard without streams; it is doing its job
            return True, f"ready: shard {self.shard_of(self.config)} runs none of the {len(self.config.streams)} configured streams"
        if not streams:
            return False, "no streams configured"
        up = [s.config.name for s in streams if s.reader.up]
        if not up:
            return False, f"no stream is up yet (0 of {len(streams)})"
        return True, f"ready: {len(up)} of {len(streams)} streams up"

    def health(self) -> tuple[bool, str]:
        """Healthy: the scheduler's loop keeps coming round (the main loop is alive: only it asks).

        Stream outages do not count: a restart cannot bring a camera back, and they have their own
        metrics and alerts. A wedged engine call or a dead scheduler thread does, and a restart fixes it.
        """
        if self.scheduler is None or not self.scheduler.responsive(self.scheduler_stall_s):
            return False, f"the scheduler has not come round for {self.scheduler_stall_s:g} s (thread dead or engine hung)"
        return True, "scheduler running"

    def status_line(self) -> str:
        """One line for ``systemctl status``: e.g. "scoring 3/4 streams, engine onnxruntime:aqs_effnet_b0"."""
        streams = list(self.streams.values())
        up = sum(1 for s in streams if s.reader.up)
        text = f"scoring {up}/{len(streams)} streams"
        if self.scheduler is not None:
            info = self.scheduler.engine.info
            text += f", engine {info.engine}:{Path(info.model).stem}"
        ready, reason = self.readiness()
        return text if ready else f"{text}; not ready: {reason}"

    # systemd ---------------------------------------------------------------------------------------
    def notify_systemd(self, notifier: Notifier, watchdog_s: float | None) -> SystemdNotify:
        """Send sd_notify messages from the lifecycle hooks; nothing is wired when ``notifier`` is off
        (not started by systemd). With a watchdog the main loop ticks at least twice per
        ``watchdog_s``, so pings come at most 1.5 x ``watchdog_s`` apart."""
        notify = SystemdNotify(notifier, watchdog_s, status_line=self.status_line, health=self.health)
        if not notify.enabled:
            return notify
        self.on_ready.append(notify.ready)
        self.on_tick.append(notify.tick)
        self.on_reloading.append(notify.reloading)
        self.on_reloaded.append(notify.ready)
        self.on_stopping.append(notify.stopping)
        if watchdog_s is not None:
            self.tick_s = min(self.tick_s, watchdog_s / 2)
            log.info("systemd watchdog enabled", extra={"event": "watchdog_enabled", "ping_every_s": watchdog_s})
        return notify

    # sharding --------------------------------------------------------------------------------------
    def shard_of(self, config: Config) -> Shard:
        return self.shard_override or config.shard.shard

    def owned_streams(self, config: Config) -> list[StreamConfig]:
        """The streams of ``config`` this instance runs; the others are never opened."""
        shard = self.shard_of(config)
        where = placement([s.name for s in config.streams], shard.count, config.shard.capacity)
        return [s for s in config.streams if where[s.name] == shard.index]

    def wanted_streams(self, config: Config) -> list[StreamConfig]:
        """The streams to run: the owned ones, each HLS ladder replaced by its variants known so far (a
        ladder is placed on a shard by its own name, so its variants never move between shards)."""
        return self.ladders.expand(self.owned_streams(config))

    def _publish_shard(self) -> None:
        shard = self.shard_of(self.config)
        self.metrics.set_shard(shard.index, shard.count, len(self.streams))
        # by the configured streams: a ladder whose master playlist is not read yet runs no stream but is owned
        self._shard_empty = not self.owned_streams(self.config) and bool(self.config.streams)

    # start -----------------------------------------------------------------------------------------
    def start_server(self) -> None:
        host, port = self.config.metrics.address
        self.server = MetricsServer(host, port, self.registry, self.readiness, web=self._start_web(host))
        self.server.start()
        log.info("metrics endpoint listening", extra={"event": "listening", "listen": self.config.metrics.listen})

    def _start_web(self, host: str) -> WebApp | None:
        """The status page and snapshots (monitor.web): fed by the readers, the checks and the quality state."""
        self.board, self.snapshot_writer, app = build_web(
            self.config, self.base_dir, lambda: list(self.streams), host,
            on_snapshot=lambda result: self.metrics.snapshots.labels(result=result).inc())
        if self.board is not None:
            self.frame_observers.append(self.board)
            self.quality.listeners.append(self.board.on_quality)
            self.quality.closed_listeners.append(self.board.on_closed)
            self.checks.listeners.append(self.board.on_signals)
        return app

    def start_engine(self) -> None:
        selection = load_engine(self.config.engine, self.base_dir, warm_up_batch=1)
        self.engine_spec = selection.spec
        self.scheduler = Scheduler(
            selection.engine, self.metrics,
            max_batch=self.config.engine.max_batch,
            max_wait_s=self.config.engine.max_wait_ms / 1000.0,
            observers=self.window_observers,
            localiser=Localiser.load(model_dir_of(self.config.engine, self.base_dir)) if self.config.snapshots.enabled else None,
        )
        self.scheduler.start()

    def start_streams(self) -> None:
        with self._lock:
            self.ladders.sync(self.owned_streams(self.config))
            for stream in self.wanted_streams(self.config):
                self._start_stream(stream)
            self._publish_streams()
            self._publish_shard()
        shard = self.shard_of(self.config)
        if shard.count > 1:
            log.info("shard assigned", extra={"event": "shard", "shard": str(shard), "streams_owned": len(self.streams),
                                              "streams_configured": len(self.config.streams)})
        if not self.config.streams:
            log.warning("no streams configured", extra={"event": "no_streams"})

    def _start_stream(self, config: StreamConfig) -> None:
        assert self.scheduler is not None
        handle = self.metrics.stream(config.name, hls=watches_playlist(config))
        ring = WindowRing(config.ring_windows, config.stride, on_window=self.scheduler.notify,
                          on_drop=handle.dropped.inc)
        reader = StreamReader(config, ring, handle, observers=self.frame_observers)
        handle.up.set(0)
        self.checks.add(config)
        self.audio.add(config)
        self.quality.add(config)
        self.playlists.add(config, handle)
        if self.scheduler.localiser is not None:
            self.scheduler.localiser.watch(config.name, config.quality.warn)
        self.streams[config.name] = StreamRuntime(config, ring, reader)
        reader.start()

    def _stop_stream(self, name: str, remove_series: bool) -> StreamReader:
        runtime = self.streams.pop(name)
        runtime.reader.stop()
        runtime.ring.clear()
        self.checks.drop(name)
        self.audio.drop(name)
        self.playlists.drop(name)
        if self.scheduler is not None and self.scheduler.localiser is not None:
            self.scheduler.localiser.forget(name)
        self.quality.drop(name, "stream removed" if remove_series else "stream restarted (config changed)")
        if remove_series:
            self.metrics.remove_stream(name)
        return runtime.reader

    def _publish_streams(self) -> None:
        assert self.scheduler is not None
        self.scheduler.set_streams(
            [ScheduledStream(name, rt.ring, self.metrics.stream(name)) for name, rt in self.streams.items()])

    def _apply_streams(self, wanted: list[StreamConfig]) -> tuple[list[str], list[str], list[str]]:
        """Start, stop and restart streams until the running ones are ``wanted`` (call with the lock held):
        new ones start, missing ones stop and lose their series, changed ones restart and keep them.
        Returns the names (added, removed, restarted)."""
        old_by_name = {name: rt.config for name, rt in self.streams.items()}
        new_by_name = {s.name: s for s in wanted}
        added, removed, changed = [], [], []
        for name in old_by_name:
            if name not in new_by_name:
                self._stop_stream(name, remove_series=True)
                removed.append(name)
        for name, stream in new_by_name.items():
            if name not in old_by_name:
                self._start_stream(stream)
                added.append(name)
            elif stream != old_by_name[name]:
                self._stop_stream(name, remove_series=False)
                self._start_stream(stream)
                changed.append(name)
        return added, removed, changed

    # HLS ladders -----------------------------------------------------------------------------------
    def request_ladder_update(self) -> None:
        """A ladder's variants changed (called on its watcher thread); applied by the main loop."""
        self._ladder_update.set()

    def update_ladders(self) -> None:
        """Start and stop ladder variants to match the master playlists as last read (like a SIGHUP change)."""
        with self._lock:
            added, removed, changed = self._apply_streams(self.wanted_streams(self.config))
            self._publish_streams()
            self._publish_shard()
        if added or removed or changed:
            log.info("ladder variants applied", extra={"event": "ladder_update", "added": ",".join(added) or "-",
                                                       "removed": ",".join(removed) or "-",
                                                       "restarted": ",".join(changed) or "-"})

    # reload ----------------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Apply the config file again; returns False when it is invalid (nothing changes) or its engine
        section failed to load (the streams change, the running engine stays)."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config reload rejected", extra={"event": "reload_rejected", "problem": problem})
            log.error("config reload rejected; the running configuration stays",
                      extra={"event": "reload_rejected", "problems": len(exc.problems)})
            self.metrics.config_reload_ok.set(0)
            self.metrics.config_reloads.labels("failure").inc()
            return False
        old = self.config
        needs_restart = [section for section in RESTART_ONLY_SECTIONS if getattr(new, section) != getattr(old, section)]
        if needs_restart:
            log.warning(f"{', '.join(needs_restart)} changed; restart the daemon to apply it (the running values stay)",
                        extra={"event": "reload_needs_restart", "sections": ",".join(needs_restart)})
            new = new.model_copy(update={section: getattr(old, section) for section in needs_restart})
        engine_ok = new.engine == old.engine or self._reload_engine(new)
        if not engine_ok:  # keep describing the engine that runs, so the same file can be retried
            new = new.model_copy(update={"engine": old.engine})
        with self._lock:
            self.ladders.sync(self.owned_streams(new))
            added, removed, changed = self._apply_streams(self.wanted_streams(new))
            self.config = new
            self._publish_streams()
            self._publish_shard()
        if self.shard_of(new) != self.shard_of(old):
            log.info("shard changed", extra={"event": "shard", "shard": str(self.shard_of(new)),
                                             "previous_shard": str(self.shard_of(old)), "streams_owned": len(self.streams),
                                             "streams_configured": len(new.streams)})
        self.metrics.config_reload_ok.set(1 if engine_ok else 0)
        self.metrics.config_reloads.labels("success" if engine_ok else "failure").inc()
        log.info("config reloaded" if engine_ok else "config reloaded, except the engine section", extra={"event": "reloaded", "added": ",".join(added) or "-",
                                           "removed": ",".join(removed) or "-", "restarted": ",".join(changed) or "-"})
        return engine_ok

    def _reload_engine(self, new: Config) -> bool:
        """Load and swap in the engine of ``new``; False (the running engine stays) when it fails."""
        assert self.scheduler is not None
        try:
            selection = self._while_ticking(lambda: load_engine(new.engine, self.base_dir), "engine-reload")
        except Exception as exc:  # noqa: BLE001 - keep the running engine
            log.error("new engine configuration failed; keeping the running engine",
                      extra={"event": "engine_reload_failed", "reason": str(exc)})
            return False
        failed_now = next((s for s in selection.skipped if s.spec == self.engine_spec), None)
        if failed_now is not None:  # the running engine is preferred but failed to load: the rest is worse
            log.error("new engine configuration only loads a fallback; keeping the running engine",
                      extra={"event": "engine_reload_failed", "running": self.engine_spec, "offered": selection.spec,
                             "reason": failed_now.reason})
            selection.engine.close()
            return False
        self.engine_spec = selection.spec
        batching = self.scheduler.reconfigure(max_batch=new.engine.max_batch,
                                              max_wait_s=new.engine.max_wait_ms / 1000.0)
        if batching.max_batch < new.engine.max_batch:
            log.warning("engine.max_batch can only grow beyond its value at start with a restart",
                        extra={"event": "reload_needs_restart", "max_batch": batching.max_batch})
        old = self.scheduler.swap_engine(selection.engine)
        try:
            old.close()
        except Exception:  # noqa: BLE001
            log.debug("closing the old engine failed", exc_info=True)
        return True

    def _while_ticking(self, work: Callable[[], T], name: str) -> T:
        """``work()`` on a helper thread while this (main) thread keeps calling the tick hooks.

        Loading an engine can take longer than ``WatchdogSec`` (a first TensorRT build takes
        minutes); the running engine keeps scoring meanwhile, so status lines and watchdog pings must
        go on. A stop request abandons the wait (the helper thread is a daemon thread).
        """
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["value"] = work()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
                outcome["error"] = exc

        helper = threading.Thread(target=run, name=name, daemon=True)
        helper.start()
        while helper.is_alive():
            helper.join(self.tick_s)
            if helper.is_alive():
                if self._stop.is_set():
                    raise RuntimeError("stop requested while loading")
                _call_all(self.on_tick)
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]

    # run / stop ------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def loop(self) -> None:
        """The main loop (main thread): apply reloads, call tick hooks, until asked to stop."""
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                _call_all(self.on_reloading)
                self.reload()
                _call_all(self.on_reloaded)
            if self._ladder_update.is_set():
                self._ladder_update.clear()
                self.update_ladders()
            _call_all(self.on_tick)
            self._stop.wait(self.tick_s)

    def shutdown(self) -> float:
        """Stop everything within :data:`STOP_DEADLINE_S`; returns the seconds it took. Should a stop hang
        anyway, every thread's stack goes to stderr (the journal) after twice the deadline, to show where."""
        started = time.monotonic()
        faulthandler.dump_traceback_later(2 * STOP_DEADLINE_S, exit=False)
        self._stop.set()
        _call_all(self.on_stopping)
        with self._lock:
            readers = [rt.reader for rt in self.streams.values()]
            for reader in readers:
                reader.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        deadline = started + STOP_DEADLINE_S
        if self.scheduler is not None:
            self.scheduler.join(max(0.0, deadline - time.monotonic()))
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        self.ladders.stop_all()
        self.playlists.stop_all(max(0.0, deadline - time.monotonic()))
        self.quality.close_all("daemon stopping")
        if self.server is not None:
            self.server.stop()
        if self.snapshot_writer is not None:
            self.snapshot_writer.stop(max(0.0, deadline - time.monotonic()))
        if self.scheduler is not None and self.scheduler.join(0):
            try:
                self.scheduler.engine.close()
            except Exception:  # noqa: BLE001
                log.debug("engine close failed", exc_info=True)
        faulthandler.cancel_dump_traceback_later()
        blocked = [r.name for r in readers if r.is_alive()]
        elapsed = time.monotonic() - started
        log.info("stopped", extra={"event": "stopped", "seconds": round(elapsed, 2),
                                   "readers_still_blocked": ",".join(blocked) or "-"})
        return elapsed


def _call_all(hooks: list[Callable[[], None]]) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:  # noqa: BLE001
            log.exception("lifecycle hook failed", extra={"event": "hook_error"})


def run_daemon(config_path: str, log_format: str = "text", log_level: str = "info", shard: Shard | None = None) -> int:
    """``vqa-monitor --config FILE``: run until SIGTERM/SIGINT. Exit 0, 1 (runtime failure) or 2 (config)."""
    setup_logging(log_format, log_level)
    holder: dict[str, Daemon] = {}
    pending = {"stop": False, "reload": False}

    def on_stop(signum: int, _frame: object) -> None:
        log.info("signal received; stopping", extra={"event": "signal", "signal": signal.Signals(signum).name})
        pending["stop"] = True
        if "daemon" in holder:
            holder["daemon"].request_stop()

    def on_reload(_signum: int, _frame: object) -> None:
        log.info("SIGHUP received; reloading the config", extra={"event": "signal", "signal": "SIGHUP"})
        pending["reload"] = True
        if "daemon" in holder:
            holder["daemon"].request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("invalid configuration", extra={"event": "config_error", "file": exc.source, "problem": problem})
        return 2
    log.info("starting vqa-monitor", extra={"event": "starting", "config": str(config_path), "pid": os.getpid(),
                                           "streams": len(config.streams)})
    daemon = Daemon(config, config_path, shard=shard)
    daemon.notify_systemd(Notifier.from_env(), watchdog_interval())
    holder["daemon"] = daemon
    try:
        daemon.start_server()
    except OSError as exc:
        log.error("cannot listen on the metrics address", extra={"event": "listen_failed",
                                                                 "listen": config.metrics.listen, "reason": str(exc)})
        return 1
    if pending["stop"]:
        daemon.shutdown()
        return 0
    try:
        daemon.start_engine()
    except Exception as exc:  # noqa: BLE001 - EngineUnavailable, or anything else the chain raised
        log.error("no inference engine could be loaded", extra={"event": "engine_failed", "reason": str(exc)})
        daemon.shutdown()
        return 1
    daemon.start_streams()
    if pending["stop"]:
        daemon.request_stop()
    if pending["reload"]:
        daemon.request_reload()
    _call_all(daemon.on_ready)
    log.info("running", extra={"event": "ready"})
    daemon.loop()
    daemon.shutdown()
    _exit_now_if_blocked(daemon)
    return 0


def _exit_now_if_blocked(daemon: Daemon) -> None:
    """Readers still blocked inside FFmpeg must not delay the exit: leave without interpreter teardown."""
    if any(rt.reader.is_alive() for rt in daemon.streams.values()):
        logging.shutdown()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(0)
