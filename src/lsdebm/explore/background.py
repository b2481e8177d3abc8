"""One background thread that runs decode jobs, newest request first (Qt-free).

Scrubbing produces a burst of requests; only the newest matters, so ``submit(..., urgent=True)``
drops every job still waiting and runs the new one next. Prefetch jobs are appended behind it
with ``replace="prefetch"``, which drops older prefetches but never a waiting request.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class JobQueue:
    """A lazily started daemon thread with a deque of zero-argument jobs."""

    def __init__(self, name: str = "lsdebm-decode") -> None:
        self.name = name
        self._jobs: deque[tuple[str | None, Callable[[], None]]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False

    def submit(self, job: Callable[[], None], urgent: bool = False, replace: str | None = None) -> None:
        """Queue ``job``: ``urgent`` drops everything still waiting and puts it first; otherwise it
        is appended, after dropping waiting jobs submitted with the same ``replace`` tag."""
        with self._cond:
            if self._closed:
                return
            if urgent:
                self._jobs.clear()
                self._jobs.appendleft((None, job))
            else:
                if replace is not None:
                    self._jobs = deque(j for j in self._jobs if j[0] != replace)
                self._jobs.append((replace, job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._cond:
            return not self._jobs and not self._busy

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until idle (for tests and benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def close(self) -> None:
        """Drop waiting jobs and stop the thread after the running one."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closed)
                if self._closed:
                    return
                _, job = self._jobs.popleft()
                self._busy = True
            try:
                job()
            except Exception:  # a failed decode must not kill the thread; the caller sees no frame
                log.exception("background job failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
