"""One daemon thread running a loop until asked to stop: the readers' and the playlist watchers' lifecycle."""
from __future__ import annotations

import threading


class Worker:
    """``start()``, ``stop()`` (sets the event :meth:`_run` watches), ``join(timeout)``.

    The thread is a daemon thread: one blocked inside a library call never keeps the process from exiting.
    """

    def __init__(self, thread_name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """True once the thread has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        raise NotImplementedError
