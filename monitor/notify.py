"""sd_notify: tell systemd (Type=notify) that the daemon is ready, alive, reloading or stopping.

The protocol is one AF_UNIX datagram per message to the socket named by ``$NOTIFY_SOCKET`` (a path, or
an abstract name written with a leading ``@``). Without ``NOTIFY_SOCKET`` (not under systemd) every call
is a no-op, so the daemon calls these unconditionally::

    notifier = Notifier.from_env()
    notifier.ready("scoring 3 streams on onnxruntime")       # engine loaded and metrics server up
    interval = watchdog_interval()                            # None: WatchdogSec= not set
    ... every `interval` seconds, only while healthy: notifier.watchdog()
    notifier.status("3/3 streams up, 24.8 windows/s")
    notifier.reloading() ... notifier.ready()                 # around a SIGHUP reload
    notifier.stopping()

No dependency: the stdlib ``socket`` module is all the protocol needs.
"""
from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["Notifier", "watchdog_interval"]

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
