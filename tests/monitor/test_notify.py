"""sd_notify over a real AF_UNIX datagram socket (path and abstract names): the protocol, and what the
daemon's :class:`SystemdNotify` sends when."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

from monitor.notify import Notifier, SystemdNotify, watchdog_interval


def _receiver(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name[1:].encode() if name.startswith("@") else name)
    sock.settimeout(2.0)
    return sock


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path):
    name = str(tmp_path / "notify.sock") if request.param == "path" else f"@vqa-test-{uuid.uuid4().hex}"
    sock = _receiver(name)
    yield name, sock
    sock.close()


def test_messages_arrive(notify_socket):
    name, sock = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    assert notifier.ready("scoring 2 streams")
    assert sock.recv(4096) == b"READY=1\nSTATUS=scoring 2 streams"
    assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.status("2/2 up\nsecond line") and sock.recv(4096) == b"STATUS=2/2 up second line"
    assert notifier.reloading()
    reloading = sock.recv(4096).decode().split("\n")
    assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
    assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_sdnotify_library_agrees(notify_socket, monkeypatch):
    """The PyPI sdnotify client (independent implementation) reaches the same socket."""
    sdnotify = pytest.importorskip("sdnotify")
    name, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    sdnotify.SystemdNotifier().notify("READY=1")
    assert sock.recv(4096) == b"READY=1"


def test_noop_without_socket():
    notifier = Notifier.from_env({})
    assert not notifier.enabled and notifier.ready() is False and notifier.watchdog() is False


def test_send_failure_is_not_fatal(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert notifier.ready() is False


def test_watchdog_interval():
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def _messages(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on ``sock``."""
    sock.settimeout(0.05)
    out = []
    try:
        while True:
            out.append(sock.recv(4096))
    except socket.timeout:
        return out


def test_systemd_notify_sends_status_on_change_and_pings_only_while_healthy(notify_socket):
    name, sock = notify_socket
    state = {"status": "scoring 0/1 streams", "health": (True, "scheduler running")}
    notify = SystemdNotify(Notifier(name), watchdog_s=0.0, status_line=lambda: state["status"],
                           health=lambda: state["health"])
    notify.ready()
    assert _messages(sock) == [b"READY=1\nSTATUS=scoring 0/1 streams"]
    notify.tick()  # status unchanged: only the ping
    assert _messages(sock) == [b"WATCHDOG=1"]
    state["status"] = "scoring 1/1 streams"
    notify.tick()
    assert _messages(sock) == [b"STATUS=scoring 1/1 streams", b"WATCHDOG=1"]
    state["health"] = (False, "engine hung")
    notify.tick()
    assert _messages(sock) == []  # no ping: systemd restarts the service after WatchdogSec
    state["health"] = (True, "scheduler running")
    notify.tick()
    assert _messages(sock) == [b"WATCHDOG=1"]
    notify.stopping()
    assert _messages(sock) == [b"STOPPING=1\nSTATUS=stopping"]


def test_systemd_notify_paces_pings_and_sends_none_without_a_watchdog(notify_socket):
    name, sock = notify_socket
    paced = SystemdNotify(Notifier(name), watchdog_s=3600.0, status_line=lambda: "up",
                          health=lambda: (True, "scheduler running"))
    paced.tick()
    paced.tick()  # within watchdog_s of the first ping
    assert _messages(sock) == [b"STATUS=up", b"WATCHDOG=1"]
    unwatched = SystemdNotify(Notifier(name), watchdog_s=None, status_line=lambda: "up",
                              health=lambda: (True, "scheduler running"))
    unwatched.tick()
    assert _messages(sock) == [b"STATUS=up"]
