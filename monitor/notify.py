"""sd_notify: tell systemd (Type=notify) that the daemon is ready, alive, reloading or stopping.

The protocol is one AF_UNIX datagram per message to the socket named by ``$NOTIFY_SOCKET`` (a path, or
an abstract name written with a leading ``@``). Without ``NOTIFY_SOCKET`` (not under systemd) every
:class:`Notifier` call is a no-op::

    notifier = Notifier.from_env()
    notifier.ready("scoring 3 streams on onnxruntime")       # engine loaded and metrics server up
    interval = watchdog_interval()                            # None: WatchdogSec= not set
    ... every `interval` seconds, only while healthy: notifier.watchdog()
    notifier.status("3/3 streams up, 24.8 windows/s")
    notifier.reloading() ... notifier.ready()                 # around a SIGHUP reload
    notifier.stopping()

:class:`SystemdNotify` decides what to send when; the daemon wires it into its lifecycle hooks
(``Daemon.notify_systemd``). No dependency: the stdlib ``socket`` module is all the protocol needs.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
from typing import Callable

__all__ = ["Notifier", "SystemdNotify", "watchdog_interval"]

log = logging.getLogger(__name__)


def _address(name: str) -> str | bytes:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()  # abstract namespace
    return name


class Notifier:
    def __init__(self, socket_name: str | None) -> None:
        self.socket_name = socket_name or None
        self._sock: socket.socket | None = None
        if self.socket_name:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Notifier":
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False when disabled or the send failed (logged)."""
        if self._sock is None or not lines:
            return False
        payload = "\n".join(lines).encode()
        try:
            self._sock.sendto(payload, _address(self.socket_name))
        except OSError as exc:  # systemd gone or socket unreadable: never fatal for the daemon
            log.warning("sd_notify to %s failed: %s", self.socket_name, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={' '.join(text.splitlines())}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: dict | None = None, fraction: float = 0.5) -> float | None:
    """Seconds between WATCHDOG=1 pings (``fraction`` of WatchdogSec, as sd_watchdog_enabled advises),
    or None when the watchdog is off, malformed, or meant for another process (WATCHDOG_PID)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1e6 * fraction


class SystemdNotify:
    """The daemon's sd_notify messages, from two questions put to it: ``status_line()`` (one line for
    ``systemctl status``) and ``health()`` (``(healthy, reason)``).

    The daemon calls :meth:`ready` when the engine is loaded and the metrics endpoint listens (and again
    after a reload), :meth:`reloading` before a reload, :meth:`tick` from its main loop and
    :meth:`stopping` at shutdown. A tick sends STATUS= whenever the status line changed, and WATCHDOG=1
    every ``watchdog_s`` (half of ``WatchdogSec=``) only while ``health()`` holds, so a wedged
    scheduler or engine call, or a stuck main loop, gets restarted by systemd.
    """

    def __init__(self, notifier: Notifier, watchdog_s: float | None, *, status_line: Callable[[], str],
                 health: Callable[[], tuple[bool, str]]) -> None:
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.status_line = status_line
        self.health = health
        self._last_ping = -math.inf
        self._last_status = ""
        self._healthy = True

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled

    def ready(self) -> None:
        self._last_status = self.status_line()
        self.notifier.ready(self._last_status)

    def reloading(self) -> None:
        self.notifier.reloading()

    def tick(self) -> None:
        status = self.status_line()
        if status != self._last_status:
            self._last_status = status
            self.notifier.status(status)
        if self.watchdog_s is not None and time.monotonic() - self._last_ping >= self.watchdog_s:
            self._ping_if_healthy()

    def _ping_if_healthy(self) -> None:
        healthy, reason = self.health()
        if healthy != self._healthy:
            self._healthy = healthy
            if healthy:
                log.info("healthy again; watchdog pings resume", extra={"event": "healthy", "reason": reason})
            else:
                log.warning("unhealthy; watchdog pings withheld (systemd restarts the service after WatchdogSec)",
                            extra={"event": "unhealthy", "reason": reason})
        if healthy:
            self.notifier.watchdog()
            self._last_ping = time.monotonic()

    def stopping(self) -> None:
        self.notifier.stopping("stopping")
